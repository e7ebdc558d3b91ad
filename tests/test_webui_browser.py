"""The web demo in a real browser: headless Debian chromium driven through chromium-driver
uploads images, types vocabularies and reads back what the page shows.

Set SFP_WEBUI_SCREENSHOT=path to also save a screenshot of the page (docs/webui.png).
"""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from sfp.apis import init_segmentor, segment_images
from sfp.datasets import read_image
from sfp.visualization import add_legend, make_palette, overlay
from sfp.webui import LABEL_ROOM, WebDemo, build_app, launch

from .conftest import FIXTURES, REPO, TINY_CKPT

CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (apt-get install "
           "chromium chromium-driver; .ci/run installs them)")
pytest.importorskip('gradio', reason='the webui extra is not installed (make test installs '
                                     'requirements-webui.txt)')
webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed (make '
                                                             'test installs it)')
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CAMVID = FIXTURES / 'data' / 'camvid' / 'val'
STREET = CAMVID / '0016E5_07959.png'
TIMEOUT = 45  # seconds for any one page event
START_TIMEOUT = 90  # seconds for a new Python process to import torch and Gradio and serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # uploads and outputs in a temporary folder
        patch.setenv('GRADIO_TEMP_DIR', str(tmp_path_factory.mktemp('gradio')))
        demo = WebDemo(str(TINY_CKPT), device='cpu', precision='fp32',
                       output_dir=tmp_path_factory.mktemp('webui_out'))
        app = build_app(demo)
        port = free_port()
        launch(app, '127.0.0.1', port, block=False)
        yield f'http://127.0.0.1:{port}/'
        app.close()


@pytest.fixture(scope='module')
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                '--window-size=1400,1700'):
        options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'performance': 'ALL'})  # requests made
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def open_page(driver, url):
    driver.get(url)
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_elements(By.ID, 'run'))


def upload(driver, path):
    clear = driver.find_elements(By.CSS_SELECTOR, '#upload button[aria-label="Clear"]')
    if clear:
        clear[0].click()
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#upload input[type=file]'))
    driver.find_element(By.CSS_SELECTOR, '#upload input[type=file]').send_keys(str(path))
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#upload button[aria-label="Clear"]'))


def set_vocabulary(driver, text):
    box = driver.find_element(By.CSS_SELECTOR, '#vocabulary textarea')
    box.clear()
    box.send_keys(text)


def status(driver) -> str:
    return driver.find_element(By.ID, 'status').text


def run(driver):
    before = status(driver)
    driver.find_element(By.ID, 'run').click()
    return before


def wait_result(driver, before) -> str:
    def settled(d):
        text = status(d)
        return text != before and text and not any(
            word in text for word in ('processing', 'queue'))
    WebDriverWait(driver, TIMEOUT).until(settled)
    return status(driver)


def fetch(url) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.read()


def page_image(driver, elem_id) -> np.ndarray:
    """A picture as the page shows it, less the white rows left for the page's label."""
    src = driver.find_element(By.CSS_SELECTOR, f'#{elem_id} img').get_attribute('src')
    picture = np.asarray(Image.open(io.BytesIO(fetch(src))).convert('RGB'))
    assert (picture[:LABEL_ROOM] == 255).all()
    return picture[LABEL_ROOM:]


def page_labels(driver) -> np.ndarray:
    href = driver.find_element(By.CSS_SELECTOR, '#labels a').get_attribute('href')
    return np.asarray(Image.open(io.BytesIO(fetch(href))))


def page_table(driver) -> list:
    cells = driver.find_elements(By.CSS_SELECTOR, '#shares [role=gridcell]')
    rows = {}
    for cell in cells:
        rows.setdefault(int(cell.get_attribute('data-row')), {})[
            int(cell.get_attribute('data-col'))] = cell.text
    return [(r[0], float(r[1]), int(r[2])) for _, r in sorted(rows.items())]


def requested_urls(driver) -> set:
    """Addresses the page has requested since the last call."""
    messages = [json.loads(entry['message'])['message'] for entry in
                driver.get_log('performance')]
    return {m['params']['request']['url'] for m in messages
            if m['method'] == 'Network.requestWillBeSent'}


def reference(image_path, classes, **thresholds) -> np.ndarray:
    segmentor = init_segmentor(str(TINY_CKPT), classes, device='cpu', precision='fp32',
                               **thresholds)
    return segment_images(segmentor, [read_image(image_path)])[0].pred_sem_seg.data[0].numpy()


def expected_table(labels, names) -> list:
    counts = np.bincount(labels.ravel(), minlength=len(names))
    order = sorted(np.flatnonzero(counts), key=lambda c: (-counts[c], c))
    return [(names[c], round(100 * counts[c] / labels.size, 2), int(counts[c])) for c in order]


def test_segment_an_upload_in_the_browser(server, browser):
    open_page(browser, server)
    assert 'random weights' in browser.find_element(By.ID, 'banner').text
    upload(browser, STREET)
    set_vocabulary(browser, 'road\nsky\nbuilding, house\ntree|bush\ncar')
    text = wait_result(browser, run(browser))
    assert '480x360 image' in text and '5 classes' in text

    names = ['road', 'sky', 'building', 'tree', 'car']
    labels = reference(STREET, [['road'], ['sky'], ['building', 'house'], ['tree', 'bush'],
                                ['car']])
    np.testing.assert_array_equal(page_labels(browser), labels)
    assert page_table(browser) == expected_table(labels, names)
    palette = make_palette(len(names))
    present = [names.index(row[0]) for row in expected_table(labels, names)]
    np.testing.assert_array_equal(page_image(browser, 'overlay'), add_legend(
        overlay(read_image(STREET)[:, :, ::-1], labels, palette), names, palette, present))
    assert page_image(browser, 'outliers').shape == (360, 480, 3)
    # nothing came from anywhere but this server (no fonts, scripts or telemetry)
    assert {u for u in requested_urls(browser) if not u.startswith((server, 'data:', 'blob:'))
            } == set()
    if os.environ.get('SFP_WEBUI_SCREENSHOT'):  # kept small for docs/webui.md: 256 colours
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert('RGB')
        shot = shot.resize((1000, round(1000 * shot.height / shot.width)), Image.LANCZOS)
        shot.quantize(256).save(os.environ['SFP_WEBUI_SCREENSHOT'], optimize=True)


def test_bad_upload_shows_a_message_and_the_server_goes_on(server, browser, tmp_path):
    open_page(browser, server)
    fake = tmp_path / 'holiday.jpg'
    fake.write_text('not a photo')
    upload(browser, fake)
    text = wait_result(browser, run(browser))
    assert 'cannot decode image holiday.jpg' in text
    thin = tmp_path / 'thin.png'
    Image.fromarray(np.zeros((1, 300, 3), np.uint8)).save(thin)
    upload(browser, thin)
    assert 'thinner than one 16-pixel patch' in wait_result(browser, run(browser))
    upload(browser, STREET)
    set_vocabulary(browser, 'sky,road')
    assert '480x360 image' in wait_result(browser, run(browser))
    np.testing.assert_array_equal(page_labels(browser), reference(STREET, [['sky'], ['road']]))


def test_two_tabs_at_once(server, browser):
    jobs = [(STREET, 'road,sky,car,tree', [['road'], ['sky'], ['car'], ['tree']]),
            (CAMVID / '0016E5_07969.png', 'person|pedestrian,building,bicycle',
             [['person', 'pedestrian'], ['building'], ['bicycle']])]
    tabs, before = [], []
    for path, vocabulary, _ in jobs:
        if tabs:
            browser.switch_to.new_window('tab')
        tabs.append(browser.current_window_handle)
        open_page(browser, server)
        upload(browser, path)
        set_vocabulary(browser, vocabulary)
    for tab in tabs:  # both requests go out before either answer is read
        browser.switch_to.window(tab)
        before.append(run(browser))
    for tab, (path, _, classes), old in zip(tabs, jobs, before):
        browser.switch_to.window(tab)
        wait_result(browser, old)
        np.testing.assert_array_equal(page_labels(browser), reference(path, classes))
        names = [c[0] for c in classes]
        assert page_table(browser) == expected_table(reference(path, classes), names)
    browser.switch_to.window(tabs[1])
    browser.close()
    browser.switch_to.window(tabs[0])


def test_command_without_the_checkpoint_says_which_file_to_place_where(browser, tmp_path):
    missing = tmp_path / 'models' / 'ViT-B-16.pt'
    port = free_port()
    log = tmp_path / 'server.log'
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp_path / 'gradio'))
    with open(log, 'w') as out:
        server = subprocess.Popen(
            [sys.executable, str(REPO / 'tools' / 'webui.py'), '--clip-path', str(missing),
             '--port', str(port), '--device', 'cpu'], stdout=out, stderr=subprocess.STDOUT,
            env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while f'127.0.0.1:{port}' not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        open_page(browser, f'http://127.0.0.1:{port}/')
        banner = browser.find_element(By.ID, 'banner').text
        assert f'no checkpoint at {missing}' in banner
        assert f'no checkpoint at {missing}' in log.read_text()  # the command says it too
        upload(browser, STREET)
        assert f'no checkpoint at {missing}' in wait_result(browser, run(browser))
    finally:
        server.terminate()
        server.wait(timeout=TIMEOUT)
