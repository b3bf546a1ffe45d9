"""Read the calling user with qlik-sdk (PyPI) and an API key; print it as one JSON line.

Usage: ``QLIK_API_KEY=<key> python qlik_sdk_users_me.py https://<host>:<port>``. qlik-sdk has no
CA option and ignores ``REQUESTS_CA_BUNDLE`` (see docs/fidelity.md), so the caller decides which
roots ``certifi.where()`` names.
"""

from __future__ import annotations

import json
import os
import sys

from qlik_sdk import AuthType, Config, Qlik


def main() -> None:
    """Print ``qlik.users.get_me()`` for the tenant in ``argv[1]``."""
    qlik = Qlik(
        Config(host=sys.argv[1], auth_type=AuthType.APIKey, api_key=os.environ["QLIK_API_KEY"])
    )
    print(json.dumps(qlik.users.get_me()))


if __name__ == "__main__":
    main()
