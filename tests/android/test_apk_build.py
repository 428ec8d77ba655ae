"""The APK that ``android_demo/ci/build_apk.sh`` builds from Debian's Android tools.

``.ci/run`` runs the script (it fetches bullseye's aapt2, dx, zipalign, apksigner and API 23's
android.jar with a private apt configuration) and points ``MOBILEPRUNE_APK_DIR`` at its output;
these tests then check what a phone's package manager would read. Elsewhere they skip, except
under ``CI=true`` where a missing build fails. To run them by hand::

    android_demo/ci/build_apk.sh /tmp/apk && MOBILEPRUNE_APK_DIR=/tmp/apk python -m pytest tests/android/test_apk_build.py
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRADLE = ROOT / "android_demo" / "app" / "build.gradle.kts"
APK_NAME = "mobileprune-demo-debug.apk"


@pytest.fixture(scope="module")
def apk_dir() -> Path:
    folder = os.environ.get("MOBILEPRUNE_APK_DIR")
    if folder and (Path(folder) / APK_NAME).is_file():
        return Path(folder)
    reason = "no APK build to check; run android_demo/ci/build_apk.sh DIR and set MOBILEPRUNE_APK_DIR=DIR" + (
        f" ({folder} has no {APK_NAME})" if folder else ""
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _gradle(key: str) -> str:
    match = re.search(rf'^\s*{key}\s*=\s*"?([^"\n]+?)"?\s*$', GRADLE.read_text(), re.MULTILINE)
    assert match, f"{key} not found in {GRADLE}"
    return match.group(1)


def test_badging_matches_the_gradle_build(apk_dir):
    badging = (apk_dir / "badging.txt").read_text()
    application_id = _gradle("applicationId")
    assert (
        f"package: name='{application_id}' versionCode='{_gradle('versionCode')}' "
        f"versionName='{_gradle('versionName')}'"
    ) in badging
    assert f"sdkVersion:'{_gradle('minSdk')}'" in badging.splitlines()
    assert f"targetSdkVersion:'{_gradle('targetSdk')}'" in badging.splitlines()
    assert f"launchable-activity: name='{_gradle('namespace')}.MainActivity'" in badging


def test_apk_is_signed_and_holds_the_app_without_litert(apk_dir):
    assert "Verifies" in (apk_dir / "apksigner.txt").read_text().splitlines()
    with zipfile.ZipFile(apk_dir / APK_NAME) as apk:
        names = set(apk.namelist())
        dex = apk.read("classes.dex")
    assert {"AndroidManifest.xml", "resources.arsc", "res/layout/activity_main.xml"} <= names
    assert dex.startswith(b"dex\n")
    # The dex string table names every class it defines or uses: the app's own classes are in.
    for name in ("MainActivity", "ModelBench", "core/DemoAssets", "core/LatencyBenchmark"):
        assert f"Ldev/mobileprune/demo/{name};".encode() in dex, name
    # No native libraries: the build check packages neither LiteRT's .so files nor anything else.
    assert not [name for name in names if name.startswith("lib/") or name.endswith(".so")]
