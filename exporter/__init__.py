"""qlik-sense-exporter: a Prometheus exporter that logs in to Qlik Sense like a real client."""

__version__ = "0.1.0"
