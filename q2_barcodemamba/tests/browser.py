"""Render visualizer pages in headless Chromium and report what happened.

A copy of the page gets a small script as the first element of <head>: it
records JavaScript errors (window 'error' events, including resources that
failed to load, unhandled promise rejections and console.error calls) and,
after the load event, every <img>'s natural size, into a
``<pre id="q2bm-browser-check">`` JSON block; ``chromium --dump-dom`` then
prints the DOM, from which the block and any element's text are read.
"""
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import zipfile

CHECK_ID = "q2bm-browser-check"
CHECK_SCRIPT = """<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target || {};
    errors.push('error: ' + (e.message || ('failed to load ' +
                (t.src || t.href || t.tagName))));
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    errors.push('unhandled rejection: ' + e.reason);
  });
  var consoleError = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    consoleError.apply(console, arguments);
  };
  window.addEventListener('load', function () {
    setTimeout(function () {
      var images = Array.prototype.map.call(document.images, function (i) {
        return {src: i.getAttribute('src'), complete: i.complete,
                naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight};
      });
      var pre = document.createElement('pre');
      pre.id = '%s';
      pre.textContent = JSON.stringify({
        errors: errors, images: images, jquery: typeof window.jQuery,
        height: document.documentElement.scrollHeight});
      document.body.appendChild(pre);
    }, 100);
  });
})();
</script>""" % CHECK_ID


def find_chromium():
    """Path of a Chromium/Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args, timeout=120):
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("Chromium is not installed: apt-get install "
                           "chromium (make test does this).")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox",
               "--no-first-run", "--disable-extensions",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               "--hide-scrollbars", "--virtual-time-budget=10000"] + args
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout)


def extract_visualization(qzv: str, dest: str) -> str:
    """Unzip a .qzv into ``dest``; return the path of its data directory."""
    with zipfile.ZipFile(qzv) as zf:
        zf.extractall(dest)
    for root, _, files in os.walk(dest):
        if os.path.basename(root) == "data" and "index.html" in files:
            return root
    raise FileNotFoundError(f"{qzv} has no data/index.html")


def check_page(index_html: str, width: int = 1280) -> dict:
    """Load a copy of ``index_html`` (next to it, so relative links work)
    with the check script; return {'errors', 'images', 'jquery', 'height',
    'dom'}."""
    with open(index_html) as fh:
        page = fh.read()
    page = re.sub(r"<head>", "<head>" + CHECK_SCRIPT, page, count=1)
    copy = os.path.join(os.path.dirname(index_html), "_browser_check.html")
    with open(copy, "w") as fh:
        fh.write(page)
    try:
        r = _run([f"--window-size={width},900", "--dump-dom",
                  "file://" + os.path.abspath(copy)])
    finally:
        os.remove(copy)
    m = re.search(r'<pre id="%s">(.*?)</pre>' % CHECK_ID, r.stdout, re.S)
    if m is None:
        raise RuntimeError(f"Chromium did not run the page's check script "
                           f"(exit {r.returncode}): {r.stderr[-2000:]}")
    result = json.loads(html.unescape(m.group(1)))
    result["dom"] = r.stdout
    return result


def element_text(dom: str, element_id: str) -> str:
    """Text of the element with ``id`` in a dumped DOM (tags stripped)."""
    m = re.search(r'<(\w+)[^>]*\bid="%s"[^>]*>(.*?)</\1>'
                  % re.escape(element_id), dom, re.S)
    if m is None:
        raise KeyError(f"no element with id {element_id!r} in the page")
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(2))).strip()


def screenshot(index_html: str, png: str, width: int = 1280,
               height: int = None) -> str:
    """Full-page PNG screenshot of ``index_html`` (height measured first
    unless given)."""
    if height is None:
        height = min(int(check_page(index_html, width)["height"]), 16000)
    r = _run([f"--window-size={width},{height}",
              f"--screenshot={os.path.abspath(png)}",
              "file://" + os.path.abspath(index_html)])
    if not os.path.isfile(png):
        raise RuntimeError(f"Chromium wrote no screenshot (exit "
                           f"{r.returncode}): {r.stderr[-2000:]}")
    return png
