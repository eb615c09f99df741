"""Reads an experiment back the way TensorBoard does: its own event multiplexer, data provider and
HParams plugin (the handlers behind the HParams dashboard), not our writer's code."""

from __future__ import annotations

import json

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def _plugin(logdir: str):
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    context = base_plugin.TBContext(logdir=logdir, multiplexer=multiplexer, data_provider=provider)
    return multiplexer, hparams_plugin.HParamsPlugin(context).get_plugin_apps()


def _post(app, route: str, body: dict) -> dict:
    import werkzeug.test
    from werkzeug.wrappers import Response

    response = werkzeug.test.Client(app, Response).post(route, data=json.dumps(body),
                                                        content_type="application/json")
    assert response.status_code == 200, response.get_data()[:500]
    return json.loads(response.get_data())


def hparams_sessions(logdir: str, metric: str = "final/knn_top1") -> dict[str, dict]:
    """``{session run: {"hparams": {...}, "metrics": {tag: value}, "status": ...}}`` as the HParams
    dashboard lists them (one session group per session: each trial is its own group)."""
    _, apps = _plugin(logdir)
    request = {"experimentName": "", "allowedStatuses": STATUSES,
               "colParams": [{"metric": {"tag": metric, "group": ""}}], "startIndex": 0, "sliceSize": 10000}
    groups = _post(apps["/session_groups"], "/session_groups", request)
    sessions = {}
    for group in groups.get("sessionGroups", []):
        for session in group["sessions"]:
            sessions[session["name"]] = {
                "hparams": group["hparams"], "status": session.get("status"),
                "metrics": {m["name"]["tag"]: m["value"] for m in session.get("metricValues", [])}}
    return sessions


def all_tags(logdir: str) -> dict[str, set[str]]:
    """Every tag of every run (scalars, tensors, text...), from TensorBoard's own accumulators."""
    multiplexer, _ = _plugin(logdir)
    tags = {}
    for run, by_kind in multiplexer.Runs().items():
        names: set[str] = set()
        for kind, values in by_kind.items():
            if isinstance(values, (list, dict)):
                names |= set(values)
        tags[run] = names
    return tags


def scalars(logdir: str, run: str, tag: str) -> list[tuple[int, float]]:
    from tensorboard.util import tensor_util

    multiplexer, _ = _plugin(logdir)
    return [(event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
            for event in multiplexer.Tensors(run, tag)]
