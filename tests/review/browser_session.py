"""A coder's session in real headless Chromium, run by test_browser.py inside a private network
namespace (`unshare --net`): brings the namespace's loopback up, starts `cli.py review` on it,
drives Chromium through chromedriver (selenium) and writes what it saw to a JSON report that
the test checks, with the saved file.

    python -m tests.review.browser_session --dataset D --predictions P --out O --db KB --report R --shot PNG
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if Path(p).exists()), "/usr/bin/chromium")
DRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage",
         "--window-size=1200,820", "--force-device-scale-factor=1"]
SELECT_WORDS = """
const [words] = arguments;
const root = document.getElementById('note-text');
for (const node of root.querySelectorAll('[data-o]')) {
  const text = node.firstChild;
  const at = text ? text.data.indexOf(words) : -1;
  if (at < 0) continue;
  const range = document.createRange();
  range.setStart(text, at);
  range.setEnd(text, at + words.length);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  node.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
  return true;
}
return false;
"""


def start_app(args, log: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "cli.py", "review", "--dataset", args.dataset, "--predictions", args.predictions,
         "--out", args.out, "--port", "0", "--db", args.db],
        cwd=REPO, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not found:
        process.kill()
        raise SystemExit(f"the review app did not start: {line!r} {log.read_text()}")
    return process, found.group(0).rstrip("/")


def card(driver, key: str):
    return driver.find_element(By.CSS_SELECTOR, f'#codes .card[data-key="{key}"]')


def waiting(driver) -> WebDriverWait:
    """A wait that looks again when the panel was swapped under it."""
    return WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException))


def wait_state(driver, key: str, state: str) -> None:
    waiting(driver).until(lambda d: state in card(d, key).get_attribute("class").split())


def pick(driver, code: str) -> None:
    """Choose `code` among the picker's hits once they are there."""
    hit = waiting(driver).until(ec.element_to_be_clickable((By.CSS_SELECTOR, f'#hits .hit[data-code="{code}"]')))
    hit.click()


def session(driver, base: str, diabetes: int, html_note: int, shot: Path) -> dict:
    seen: dict = {}
    wait = waiting(driver)
    driver.get(f"{base}/notes/{diabetes}")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#codes .card.focused")))

    # hovering a card lights its spans; hovering a span lights its card
    ActionChains(driver).move_to_element(card(driver, "s3")).perform()
    seen["hover_card_lights"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#note-text .ev.hot")]
    span = driver.find_element(By.CSS_SELECTOR, '#note-text [data-keys~="s0"]')
    ActionChains(driver).move_to_element(span).perform()
    seen["hover_span_lights"] = [e.get_attribute("data-key") for e in driver.find_elements(By.CSS_SELECTOR, "#codes .card.hot")]
    seen["span_title"] = span.get_attribute("title")

    # accept the first code with the keyboard (the first pending card has the focus)
    driver.find_element(By.TAG_NAME, "body").send_keys("a")
    wait_state(driver, "s0", "accepted")
    seen["focus_after_accept"] = driver.find_element(By.CSS_SELECTOR, "#codes .card.focused").get_attribute("data-key")

    # reject the second: r, a reason, Enter
    driver.find_element(By.TAG_NAME, "body").send_keys("r")
    reason = driver.switch_to.active_element
    seen["reason_focused_in"] = reason.find_element(By.XPATH, "ancestor::article").get_attribute("data-key")
    reason.send_keys("BMI 31 only, not assessed", Keys.ENTER)
    wait_state(driver, "s1", "rejected")

    # replace the third through the search box
    card(driver, "s2").find_element(By.CSS_SELECTOR, "[data-replace]").click()
    query = wait.until(ec.visibility_of_element_located((By.ID, "picker-query")))
    query.send_keys("pure hypercholesterolemia")
    pick(driver, "E78.00")
    wait_state(driver, "s2", "replaced")

    # add a missed code by selecting its words in the note
    assert driver.execute_script(SELECT_WORDS, "Diabetic peripheral polyneuropathy"), "words not found in the note"
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#selection-tip button"))).click()
    seen["add_query"] = wait.until(ec.visibility_of_element_located((By.ID, "picker-query"))).get_attribute("value")
    pick(driver, "E11.42")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#codes .card[data-key="a0"]')))

    # a second tab on the same note decides the last code; the first tab, still showing it
    # pending, must not overwrite that decision
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(f"{base}/notes/{diabetes}")
    card(driver, "s3").find_element(By.CSS_SELECTOR, "[data-accept]").click()
    wait_state(driver, "s3", "accepted")
    driver.close()
    driver.switch_to.window(first)
    time.sleep(0.5)  # the page refreshes its panel when it becomes visible again, if the browser says so
    stale = card(driver, "s3").find_elements(By.CSS_SELECTOR, "[data-reject]")
    if stale:
        stale[0].click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#codes .flash.error")))
        seen["stale_tab_message"] = driver.find_element(By.CSS_SELECTOR, "#codes .flash.error").text
    seen["stale_tab_state"] = card(driver, "s3").get_attribute("class").split()

    # reload: the page shows every decision from the file
    driver.refresh()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#codes .card.focused")))
    seen["after_reload"] = {
        e.get_attribute("data-key"): [e.get_attribute("class").split()[2], e.find_element(By.CSS_SELECTOR, ".code").text]
        for e in driver.find_elements(By.CSS_SELECTOR, "#codes .card")
    }
    seen["reason_shown"] = card(driver, "s1").find_element(By.CSS_SELECTOR, ".reason").text
    seen["replacement_shown"] = card(driver, "s2").find_element(By.CSS_SELECTOR, ".replacement").text
    seen["added_span"] = driver.find_element(By.CSS_SELECTOR, '#note-text [data-keys~="a0"]').text
    seen["progress"] = driver.find_element(By.ID, "progress").text
    driver.execute_script("document.querySelector('#note-text .heading:nth-of-type(3)').scrollIntoView()")
    ActionChains(driver).move_to_element(card(driver, "s2")).perform()
    driver.save_screenshot(str(shot))

    # done: on to the next note
    driver.find_element(By.TAG_NAME, "body").send_keys("d")
    wait.until(lambda d: not d.current_url.endswith(f"/notes/{diabetes}"))
    seen["after_done_url"] = driver.current_url.removeprefix(base)

    # a note written as HTML with scripts is shown as text, and nothing runs
    driver.get(f"{base}/notes/{html_note}")
    wait.until(ec.presence_of_element_located((By.ID, "note-text")))
    time.sleep(0.5)
    seen["html_note_text"] = driver.find_element(By.ID, "note-text").text
    seen["title"] = driver.title
    seen["pwned"] = driver.execute_script("return window.pwned === true")
    seen["script_elements_in_note"] = len(driver.find_elements(By.CSS_SELECTOR, "#note-text script, #note-text img"))

    # every resource the pages loaded came from the app itself
    seen["resources"] = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    seen["origin"] = base
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--dataset", "--predictions", "--out", "--db", "--report", "--shot"):
        parser.add_argument(name, required=True)
    parser.add_argument("--diabetes", type=int, required=True)
    parser.add_argument("--html-note", type=int, required=True)
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route", "show"], check=True, capture_output=True, text=True).stdout
    report: dict = {"interfaces": re.findall(r"^\d+: ([^:@]+)", links, re.M), "routes": routes.strip()}
    work = Path(tempfile.mkdtemp(prefix="review-browser-"))
    app, base = start_app(args, work / "app.log")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={work / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER, log_output=str(work / "chromedriver.log")), options=options)
    try:
        report.update(session(driver, base, args.diabetes, args.html_note, Path(args.shot)))
    finally:
        driver.quit()
        app.terminate()
        app.wait(timeout=20)
        report["app_log"] = (work / "app.log").read_text()
        Path(args.report).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
