"""The web app's settings without gradio: the CLI parser and the backend import no UI, and the
package exports what the single-module app did."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from glmix_vis.app import serving, settings


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_settings_and_the_cli_parser_do_not_import_gradio():
    proc = _run("""
        import sys
        import glmix_vis.app.settings
        from glmix_vis.cli._dispatch import build_parser
        from glmix_vis.cli.vis import COMMANDS

        args = build_parser("glmix-vis", "", COMMANDS, only="app").parse_args(["app"])
        assert args.port == glmix_vis.app.settings.DEFAULT_PORT, args
        print(sorted(m for m in sys.modules if m == "gradio" or m.startswith("gradio.")))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_backend_and_serving_do_not_import_gradio():
    proc = _run("""
        import sys
        from glmix_vis.app import SlotApp, discover_checkpoints, limit_heap_fragmentation  # backend, serving
        from glmix_vis.app import messages, model_cache, views  # noqa: F401
        print(sorted(m for m in sys.modules if m == "gradio" or m.startswith("gradio.")))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout


def test_cli_defaults_come_from_the_settings_and_bind_loopback():
    from glmix_vis.cli import app_cmd
    from glmix_vis.cli._dispatch import build_parser
    from glmix_vis.cli.vis import COMMANDS

    args = build_parser("glmix-vis", "", COMMANDS, only="app").parse_args(["app"])
    assert args.host == "127.0.0.1" == settings.DEFAULT_HOST and args.checkpoint is None
    assert (args.port, args.max_file_size, args.max_side, args.concurrency, args.device) == (
        settings.DEFAULT_PORT, settings.DEFAULT_MAX_FILE_SIZE, settings.DEFAULT_MAX_SIDE,
        settings.DEFAULT_CONCURRENCY, settings.DEFAULT_DEVICE)
    for name in ("DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_MAX_FILE_SIZE", "DEFAULT_MAX_SIDE", "DEFAULT_CONCURRENCY"):
        assert getattr(app_cmd, name) is getattr(settings, name)  # imported, not copied


def test_launch_options_serve_loopback_with_bounded_resources():
    opts = serving.launch_options()
    assert opts["server_name"] == "127.0.0.1" and opts["server_port"] == settings.DEFAULT_PORT
    assert opts["show_error"] is False and opts["max_file_size"] == settings.DEFAULT_MAX_FILE_SIZE
    assert opts["state_session_capacity"] == settings.DEFAULT_MAX_SESSIONS
    assert set(opts["allowed_paths"]) == {str(p) for p in serving.example_files().values()}
    assert serving.launch_options(concurrency=4)["max_threads"] == 16
    assert serving.queue_options(3) == dict(default_concurrency_limit=3, max_size=settings.DEFAULT_QUEUE_SIZE)


def test_package_exports_every_public_name():
    pytest.importorskip("gradio")
    import glmix_vis.app as webapp
    from glmix_vis.app import backend, file_cache, messages, model_cache, page, views

    public = {"SlotApp": backend, "AppError": messages, "Analysis": views, "LoadedModel": model_cache,
              "ModelCache": model_cache, "describe_model": model_cache, "INTRO": page, "UploadImage": page,
              "build_app": page, "class_colors": page, "colorbar_html": page, "launch": page,
              "VisitorFileCache": file_cache}
    assert set(webapp.__all__) == set(settings.__all__) | set(serving.__all__) | set(public)
    for name, module in public.items():
        assert name in module.__all__ and getattr(webapp, name) is getattr(module, name), name
    for name in set(settings.__all__) | set(serving.__all__):
        assert getattr(webapp, name) is not None, name
    from glmix_vis.app import DEMO_LABEL, ModelCache, SlotApp, build_app, discover_checkpoints, launch  # noqa: F401
    with pytest.raises(AttributeError, match="no_such_name"):
        webapp.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------ the upload limit
@pytest.mark.parametrize("given, read", [("20mb", "20mb"), ("500 KB", "500kb"), ("1GB", "1gb"), ("1000", "1000b"),
                                         ("7b", "7b"), (4096, 4096)])
def test_upload_limits_are_read_as_gradio_reads_them(given, read):
    assert settings.file_size(given) == read


@pytest.mark.parametrize("bad", ["lots", "", "mb", "20 furlongs", "-5mb", "0kb", "1.5mb", 0])
def test_a_bad_upload_limit_is_one_line(bad):
    with pytest.raises(ValueError, match="^an upload limit") as info:
        settings.file_size(bad)
    assert "\n" not in str(info.value)


def test_app_refuses_a_bad_max_file_size_in_one_line_before_loading(capsys, monkeypatch):
    """``--max-file-size lots`` said ``invalid literal for int()`` after loading everything."""
    import glmix_vis.app.page as page
    from glmix_vis.cli.vis import main

    def loaded(*args, **kwargs):
        raise AssertionError("the app started loading")

    monkeypatch.setattr(page, "launch", loaded)
    monkeypatch.setattr(page, "build_app", loaded)
    assert main(["app", "--max-file-size", "lots", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == ("glmix-vis app: error: --max-file-size: an upload limit is a whole number with a unit "
                   "(b, kb, mb, gb, tb), e.g. 20mb; got 'lots'\n"), err
