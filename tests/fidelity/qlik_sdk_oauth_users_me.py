"""Read the calling user with qlik-sdk (PyPI) as an OAuth M2M client; print it as one JSON line.

Usage: ``QLIK_CLIENT_ID=<id> QLIK_CLIENT_SECRET=<secret> python qlik_sdk_oauth_users_me.py
https://<host>:<port>``. Needs a qlik-sdk with ``AuthType.OAuth2`` (0.17.0 here, installed apart
from the project's environment). ``authorize()`` runs the client-credentials grant (client id
and secret in ``Authorization: Basic``); the token then goes out as ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import os
import sys

from qlik_sdk import AuthType, Config, Qlik


def main() -> None:
    """Print the token response's non-secret fields and ``qlik.users.get_me()``."""
    qlik = Qlik(
        Config(
            host=sys.argv[1],
            auth_type=AuthType.OAuth2,
            client_id=os.environ["QLIK_CLIENT_ID"],
            client_secret=os.environ["QLIK_CLIENT_SECRET"],
        )
    )
    token = qlik.auth.authorize()
    me = qlik.users.get_me()
    user = me if isinstance(me, dict) else dict(vars(me))
    fields = {k: token[k] for k in ("token_type", "expires_in", "scope") if k in token}
    print(
        json.dumps({"token": fields, "user": {k: user.get(k) for k in ("id", "tenantId", "name")}})
    )


if __name__ == "__main__":
    main()
