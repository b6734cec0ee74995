"""The web page of ``imesh serve`` in a real browser: Debian's headless Chromium, driven by Selenium.

A real server process (one CPU worker) loads the tiny weights folder ``imesh selftest --save-weights``
writes (``--weights-dir DIR --offline``) and listens on a loopback port with a token. The
browser opens ``/?token=...``, uploads the bundled photo (two at once), follows the jobs'
progress, waits for the 3D view to load the exported mesh, downloads the GLB (its bytes must
be the API's), sends a file that is not an image (one line on the page, and the next upload,
an OBJ, still works), and keeps screenshots at laptop and phone widths in ``$IMESH_SCREENSHOTS``
(default: a temporary folder, printed). It also asserts that the page asked nothing of any
other host and that the console stayed free of errors.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``;
.ci/run installs them when it can); without them these tests skip and say so.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from instantmesh_cli.examples import example_photo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "web-page-test-token-0123456789"
FAST = {"opt-steps": "1", "opt-texture-size": "64", "opt-refine-steps": "1"}
WEB = Path(__file__).resolve().parents[1] / "instantmesh_cli" / "serve" / "web"

if CHROMIUM is None or CHROMEDRIVER is None:
    _NO_BROWSER = "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver; .ci/run does it where apt works)"
elif importlib.util.find_spec("selenium") is None:
    _NO_BROWSER = "selenium is not installed (pip install -e '.[test]')"
else:
    _NO_BROWSER = None
browser_needed = pytest.mark.skipif(_NO_BROWSER is not None, reason=_NO_BROWSER or "")


# --------------------------------------------------------------------------- no browser needed


def test_vendored_three_is_the_npm_release_listed_in_its_readme():
    vendor = WEB / "vendor" / "three"
    listed = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", (vendor / "README.md").read_text(), re.M))
    present = {p.relative_to(vendor).as_posix() for p in vendor.rglob("*.js")}
    assert listed and set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (vendor / "LICENSE").read_text()
    # Every module the page imports is there: the viewer's imports and theirs, through the import map.
    imports = {}
    for path in [WEB / "viewer.js", *vendor.rglob("*.js")]:
        for spec in re.findall(r"^\s*(?:import|export)\b[^'\"]*?from\s*'([^']+)'", path.read_text(), re.M):
            imports.setdefault(spec, path)
    for spec, where in imports.items():
        if spec == "three":
            target = vendor / "build" / "three.module.js"
        elif spec.startswith("three/addons/"):
            target = vendor / "examples" / "jsm" / spec[len("three/addons/"):]
        else:
            target = (where.parent / spec).resolve()
        assert target.is_file(), f"{where.name} imports {spec}"


def test_no_token_means_loopback_host_names_only(tmp_path):
    """A server without a token refuses other Host names (DNS rebinding); one with a token serves any."""
    from fastapi.testclient import TestClient

    from instantmesh_cli.chain.options import PipelineOptions
    from instantmesh_cli.serve.app import Service, build_app
    from instantmesh_cli.serve.jobs import JobTable

    options = PipelineOptions(device="cpu")
    for token in (None, TOKEN):
        service = Service(options=options, device_type="cpu", devices=["cpu"], token=token)
        client = TestClient(build_app(service, JobTable(None, options, tmp_path, ttl=60)))
        for host, ok in [("localhost:8411", True), ("127.0.0.1:8411", True), ("[::1]:8411", True),
                         ("evil.example:8411", token is not None), ("127.0.0.1.evil.example", token is not None)]:
            response = client.get("/", headers={"host": host})
            assert (response.status_code == 200) == ok, (token, host, response.text)
            if not ok:
                assert response.status_code == 421 and "--token" in response.json()["error"]


# --------------------------------------------------------------------------- a real server and browser


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The folder `imesh selftest --save-weights` writes (its own function, without the selftest's run)."""
    from instantmesh_cli.random_weights import write_tiny_weights

    return write_tiny_weights(tmp_path_factory.mktemp("web-weights") / "weights").resolve()


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("web-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMESH_REVISION_") and k != "IMESH_SERVER"}
    repo = str(Path(__file__).resolve().parents[1])
    env.update(PYTHONPATH=os.pathsep.join([repo, env.get("PYTHONPATH", "")]).rstrip(os.pathsep), PYTHONUNBUFFERED="1",
               IMESH_CACHE_DIR=str(root / "cache"), XDG_RUNTIME_DIR=str(root), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "instantmesh_cli", "serve", "--weights-dir", str(weights), "--offline", "--device", "cpu",
         "--host", "127.0.0.1", "--port", "0", "--token", TOKEN, "--max-upload", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()
        raise AssertionError(f"server did not start: {line} {proc.stderr.read()}")
    yield {"url": line, "proc": proc}
    # Finished jobs nobody deleted keep a draining server waiting for their clients (FETCH_GRACE).
    with httpx.Client(base_url=line, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, trust_env=False) as c:
        for job in c.get("/v1/jobs").json() if proc.poll() is None else []:
            c.delete(f"/v1/jobs/{job['id']}")
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
                      trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    folder = Path(os.environ.get("IMESH_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb page screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900",
                "--hide-scrollbars", "--no-first-run", "--disable-extensions", "--disable-background-networking",
                # WebGL without a GPU: ANGLE on SwiftShader, Chromium's software renderer.
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait(driver, condition, timeout=120, what="the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception as exc:  # noqa: BLE001 - reported with what the page showed
        error = driver.execute_script("return document.getElementById('error-text').textContent")
        raise AssertionError(f"{what}: timed out; the page's error line: {error!r}") from exc


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def shot(driver, path: Path, *, full: bool, top: bool = True) -> None:
    if top:
        js(driver, "window.scrollTo({top: 0, behavior: 'instant'})")
    time.sleep(0.5)
    data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full})["data"]
    path.write_bytes(base64.b64decode(data))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def viewer(driver) -> dict:
    return js(driver, "return Object.assign({}, document.getElementById('viewer').dataset)")


def severe(driver, allowed=()) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(a in e["message"] for a in allowed)]


def foreign_requests(driver, origin: str) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not (url.startswith(origin + "/") or url.startswith(f"blob:{origin}/") or url.startswith("data:")):
                urls.append(url)
    return urls


def job_named(api, name: str, exclude=()) -> dict:
    ids = [j["id"] for j in api.get("/v1/jobs").json() if j["name"] == name and j["id"] not in exclude]
    assert len(ids) == 1, (name, ids)
    return api.get(f"/v1/jobs/{ids[0]}").json()


def upload(driver, *paths: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "pick").send_keys("\n".join(str(p) for p in paths))


@browser_needed
def test_upload_follow_view_download_and_a_bad_file_in_a_real_browser(server, api, browser, screens, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, origin = browser, server["url"]
    started = time.perf_counter()
    d.get(f"{origin}/?token={TOKEN}")
    wait(d, lambda d: js(d, "return document.body.dataset.ready === 'true'"), 60, "the page getting ready")
    assert "token" not in d.current_url  # taken from the address once, kept in the tab
    assert js(d, "return sessionStorage.getItem('imesh-token')") == TOKEN
    assert "1/1 worker ready" in d.find_element(By.ID, "server-text").text
    # The form's defaults are the server's (GET /v1/fields), not numbers copied into the page.
    assert d.find_element(By.ID, "opt-texture-size").get_attribute("value") == "1024"
    assert Select(d.find_element(By.ID, "opt-model")).first_selected_option.get_attribute("value") == "instant-mesh-large"
    for element_id, value in FAST.items():
        field = d.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)
    d.find_element(By.ID, "opt-preview").click()
    # Every text the progress line and the badges show, as they change.
    js(d, """window.seen = new Set();
             new MutationObserver(() => {
               for (const el of document.querySelectorAll('.badge, #d-progress-text')) window.seen.add(el.textContent);
             }).observe(document.body, {subtree: true, childList: true, characterData: true});""")

    # Two photos in one pick: two jobs, the second waiting for the one worker.
    second = tmp_path / "duck-two.png"
    shutil.copy(example_photo(), second)
    upload(d, example_photo(), second)
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) == 2, 30, "two gallery cards")
    wait(d, lambda d: viewer(d).get("state") == "loaded", 180, "the 3D view of the first job")
    first = job_named(api, example_photo().name)
    shown = viewer(d)
    assert shown["job"] == first["id"] and first["state"] == "done"
    assert int(shown["triangles"]) == first["result"]["faces"]
    assert shown["textured"] == "true" and shown["textureSize"] == "64x64"
    seen = set(js(d, "return [...window.seen]"))
    assert any(t.startswith("queued") for t in seen), seen
    assert any(re.match(r"(Cut-out|Views|Mesh|Texture|Check|Export)\b", t) for t in seen), seen
    # The record's numbers on the page.
    numbers = d.find_element(By.ID, "d-numbers").text
    assert f"{first['result']['faces']:,}" in numbers and f"{first['result']['quality']['psnr']:.2f} dB" in numbers
    assert d.find_element(By.ID, "d-suspect").is_displayed() is (first["result"]["status"] == "suspect")
    for img in ("d-cutout", "d-views", "d-preview"):
        wait(d, lambda d: js(d, f"const i = document.getElementById('{img}'); return i.complete && i.naturalWidth > 0"),
             30, img)

    # The GLB downloaded from the page is the API's file, byte for byte.
    d.find_element(By.CSS_SELECTOR, "#d-downloads button[data-kind='mesh']").click()
    target = d.downloads / f"{Path(example_photo()).stem}.glb"
    wait(d, lambda d: target.exists() and not list(d.downloads.glob("*.crdownload")), 30, "the GLB download")
    assert target.read_bytes() == api.get(f"/v1/jobs/{first['id']}/mesh").content
    assert target.read_bytes()[:4] == b"glTF"

    wait(d, lambda d: "done" in d.find_element(By.CSS_SELECTOR, "#gallery .card:first-child .badge").text, 120,
         "the second job")
    assert severe(d) == [], "console errors"
    js(d, "document.getElementById('detail').scrollIntoView({block: 'start', behavior: 'instant'})")
    shot(d, screens / "laptop.png", full=False, top=False)  # what one sees after a drop
    shot(d, screens / "laptop-full.png", full=True)

    # Not an image: one line on the page, nothing queued, and the next upload (an OBJ) works.
    bad = tmp_path / "notes.png"
    bad.write_text("shopping list: eggs, milk\n")
    upload(d, bad)
    wait(d, lambda d: d.find_element(By.ID, "error").is_displayed(), 30, "the error line")
    error = d.find_element(By.ID, "error-text")
    assert "notes.png" in error.text and "not an image" in error.text and "\n" not in error.text
    line_height = js(d, "return parseFloat(getComputedStyle(arguments[0]).lineHeight)", error)
    assert error.size["height"] <= 1.5 * line_height  # one line on the screen too
    shot(d, screens / "laptop-error.png", full=False)
    assert len(api.get("/v1/jobs").json()) == 2
    Select(d.find_element(By.ID, "opt-format")).select_by_value("obj")
    upload(d, example_photo())
    wait(d, lambda d: not d.find_element(By.ID, "error").is_displayed(), 10, "the error line clearing")
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) == 3, 30, "a third card")
    obj = job_named(api, example_photo().name, exclude={first["id"]})
    wait(d, lambda d: viewer(d).get("job") == obj["id"] and viewer(d).get("state") == "loaded", 120, "the OBJ in the 3D view")
    obj = api.get(f"/v1/jobs/{obj['id']}").json()
    assert [f["name"] for f in obj["files"]][:1] == ["example.obj"]
    assert viewer(d)["textured"] == "true" and viewer(d)["textureSize"] == "64x64"  # .mtl and .png found by name
    assert d.find_element(By.CSS_SELECTOR, "#d-downloads button[data-kind='mesh-zip']").is_displayed()
    # The failed upload's 422 is the only console error; nothing was asked of any other host.
    assert severe(d, allowed=["/v1/jobs - Failed to load resource: the server responded with a status of 422"]) == []
    assert foreign_requests(d, origin) == []

    # A job another client sends joins the gallery; below its min-psnr it is flagged suspect.
    sent = api.post("/v1/jobs", files={"image": ("api-duck.png", example_photo().read_bytes(), "image/png")},
                    data={"steps": "1", "texture-size": "64", "refine-steps": "1", "min-psnr": "99"})
    assert sent.status_code == 202, sent.text
    card = f"#gallery .card[data-id='{sent.json()['id']}'] .card-open"
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, card), 30, "the other client's job in the gallery")[0].click()
    wait(d, lambda d: viewer(d).get("job") == sent.json()["id"] and viewer(d).get("state") == "loaded", 120,
         "the other client's mesh")
    assert api.get(f"/v1/jobs/{sent.json()['id']}").json()["result"]["status"] == "suspect"
    assert d.find_element(By.ID, "d-badge").text == "suspect" and d.find_element(By.ID, "d-suspect").is_displayed()
    assert "suspect" in d.find_element(By.CSS_SELECTOR, f"#gallery .card[data-id='{sent.json()['id']}'] .badge").text

    # Phone width: a real mobile viewport (touch, device pixels), the page loaded afresh at that size
    # (the token stays in the tab) and the first job opened from the gallery.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2,
                                                              "mobile": True})
    d.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
    try:
        d.refresh()
        wait(d, lambda d: js(d, "return document.body.dataset.ready === 'true'"), 60, "the page on a phone")
        assert not d.find_element(By.ID, "options-details").get_attribute("open")  # folded on a phone
        card = f"#gallery .card[data-id='{first['id']}'] .card-open"
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, card), 30, "the gallery on a phone")[0].click()
        wait(d, lambda d: viewer(d).get("job") == first["id"] and viewer(d).get("state") == "loaded", 60,
             "the 3D view on a phone")
        overflow = js(d, "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        wide = js(d, """const w = document.documentElement.clientWidth;
                        return [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > w + 0.5)
                          .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`).slice(0, 8);""")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone: {wide}"
        shot(d, screens / "phone.png", full=False, top=False)
        shot(d, screens / "phone-full.png", full=True)
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        d.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
    assert severe(d) == [], "console errors on the phone"
    assert server["proc"].poll() is None and api.get("/v1/health").json()["status"] == "ok"
    print(f"browser test: {time.perf_counter() - started:.1f} s")


@browser_needed
def test_without_the_token_the_page_asks_for_it(server, browser):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(f"{server['url']}/")
    js(d, "sessionStorage.clear()")
    d.get(f"{server['url']}/")
    wait(d, lambda d: d.find_element(By.ID, "login").is_displayed(), 30, "the login form")
    field = d.find_element(By.ID, "login-token")
    field.send_keys("not-the-token-at-all-0000")
    d.find_element(By.CSS_SELECTOR, "#login button[type='submit']").click()
    wait(d, lambda d: d.find_element(By.ID, "login-error").is_displayed(), 30, "the wrong-token line")
    assert "wrong token" in d.find_element(By.ID, "login-error").text
    field.clear()
    field.send_keys(TOKEN)
    d.find_element(By.CSS_SELECTOR, "#login button[type='submit']").click()
    wait(d, lambda d: js(d, "return document.body.dataset.ready === 'true'"), 30, "the page after the login")
    assert not d.find_element(By.ID, "login").is_displayed()
    assert js(d, "return sessionStorage.getItem('imesh-token')") == TOKEN
    assert TOKEN not in d.current_url


def test_page_and_files_are_public_the_api_is_not(server):
    with httpx.Client(base_url=server["url"], timeout=30, trust_env=False) as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "connect-src 'self' blob: data:" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
        import_map = re.search(r'<script type="importmap">(.*?)</script>', page.text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
        assert page.headers["referrer-policy"] == "no-referrer"
        script = anonymous.get("/web/vendor/three/build/three.module.js", headers={"accept-encoding": "gzip"})
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert script.headers["content-encoding"] == "gzip" and b"three" in script.content
        again = anonymous.get("/web/app.js", headers={"if-none-match": anonymous.get("/web/app.js").headers["etag"]})
        assert again.status_code == 304
        for path in ("/web/../page.py", "/web/%2e%2e/page.py", "/web/..%2fapp.py", "/web/", "/web/vendor"):
            response = anonymous.get(path)
            assert response.status_code == 404 and set(response.json()) == {"error"}, path
        assert anonymous.get("/v1/jobs").status_code == 401
        assert anonymous.get("/v1/fields").status_code == 401
