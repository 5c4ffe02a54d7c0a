"""Monitoring: drift reports, the monitoring database and alerts.

A drift report (:func:`eta_cli.monitor.drift.drift_report`) is four steps, one module each:

- :mod:`.data`: gather the reference and current orders, sampled, typed and scored;
- :mod:`.drift`: score them with Evidently (per column and the prediction), the entry point;
- :mod:`.quality`: compare quality with the champion's test metrics, and the store mix;
- :mod:`.deliver`: monitoring database rows, the files of :mod:`.report`, S3, the alert.

:mod:`.result` holds the request, the result and the compared columns;
:mod:`.database` the monitoring database's schema (prediction log and drift results);
:mod:`.alerts` the Slack-compatible webhook.
"""
