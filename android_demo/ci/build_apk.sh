#!/usr/bin/env bash
# Compile and package the demo app into a debug-signed APK with Debian's Android tools only.
#
# Google's Maven repository (the Android Gradle plugin, LiteRT) is out of reach here, so this
# is the build as far as Debian's packages go:
#   aapt2 compile + link   resources and the manifest (a copy with the `package` attribute that
#                          Gradle would add from `namespace`, SDK levels from app/build.gradle.kts)
#   javac                  the app's Java against API 23's android.jar (Debian's only platform jar)
#                          and compile-time stand-ins for the LiteRT calls (ci/litert-stubs/)
#   dx                     Java bytecode to dex (the stand-ins are NOT packaged)
#   zipalign, apksigner    a debug-signed, aligned APK
#   aapt dump badging      checks package name, version, SDK levels and the launcher activity
#
# The tools come from Debian bullseye (bookworm dropped libandroid-23-java and dalvik-exchange),
# fetched with a private apt configuration under a temporary folder: the system's sources, state
# and cache are only read (its dpkg status, so installed libraries are not fetched twice), never
# written. Nothing is installed; the packages are unpacked with dpkg-deb -x.
#
# The APK has no LiteRT (neither its Java classes nor its native libraries): a build check, not
# an app to ship. Build the real app with Gradle (android_demo/README.md).
#
# Usage: android_demo/ci/build_apk.sh [OUT_DIR]   (default: android_demo/build/ci-apk)
# Writes OUT_DIR/mobileprune-demo-debug.apk, OUT_DIR/badging.txt and OUT_DIR/apksigner.txt.
# Set ANDROID_TOOLS_ROOT to a folder the script filled before to skip the download.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DEMO="$(dirname "$HERE")"
APP="$DEMO/app"
OUT="$(mkdir -p "${1:-$DEMO/build/ci-apk}" && cd "${1:-$DEMO/build/ci-apk}" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PACKAGES=(aapt libandroid-23-java dalvik-exchange zipalign apksigner)

say() { echo "build_apk: $*"; }
fail() { echo "build_apk: error: $*" >&2; exit 1; }

# --- 1. Debian bullseye's Android tools, with a private apt configuration -------------------
fetch_tools() {
  local root="$1" apt="$WORK/apt"
  command -v apt-get >/dev/null || fail "apt-get not found; this check needs a Debian-based machine"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || fail "$keyring missing; install debian-archive-keyring"
  mkdir -p "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/etc/apt.conf.d" \
           "$apt/state/lists/partial" "$apt/cache/archives/partial"
  echo "deb [signed-by=$keyring] http://deb.debian.org/debian bullseye main" > "$apt/etc/sources.list"
  local opts=(-o "Dir::Etc=$apt/etc" -o "Dir::State=$apt/state" -o "Dir::Cache=$apt/cache"
              -o "Dir::State::status=/var/lib/dpkg/status" -o Debug::NoLocking=1
              -o APT::Sandbox::User=root -o Acquire::Languages=none)
  say "fetching ${PACKAGES[*]} from bullseye (private apt configuration in $apt)"
  apt-get "${opts[@]}" -qq update
  apt-get "${opts[@]}" -qq -y --no-install-recommends --download-only install "${PACKAGES[@]}" >/dev/null
  mkdir -p "$root"
  for deb in "$apt"/cache/archives/*.deb; do
    dpkg-deb -x "$deb" "$root"
  done
}

ROOT="${ANDROID_TOOLS_ROOT:-$WORK/root}"
if [ ! -x "$ROOT/usr/lib/android-sdk/build-tools/debian/aapt2" ]; then
  fetch_tools "$ROOT"
fi
TOOLS="$ROOT/usr/lib/android-sdk/build-tools/debian"
ANDROID_JAR="$ROOT/usr/lib/android-sdk/platforms/android-23/android.jar"
[ -f "$ANDROID_JAR" ] || fail "android.jar of API 23 not found under $ROOT"
# The native tools find their Android libraries (and bullseye's libzopfli/libprotobuf) here.
export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu/android:$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/usr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
aapt2() { "$TOOLS/aapt2" "$@"; }
aapt() { "$TOOLS/aapt" "$@"; }
zipalign() { "$TOOLS/zipalign" "$@"; }
dx() { java -jar "$ROOT/usr/share/java/com.android.dx.jar" "$@"; }
apksigner() {
  java -cp "$ROOT/usr/share/java/apksigner.jar:$ROOT/usr/share/java/apksig.jar" \
    com.android.apksigner.ApkSignerTool "$@"
}

# --- 2. What Gradle would take from app/build.gradle.kts -------------------------------------
gradle_value() {  # gradle_value KEY -> the value of `KEY = value` (quotes stripped)
  sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"?([^\"]*)\"?[[:space:]]*$/\1/p" "$APP/build.gradle.kts" | head -n 1
}
NAMESPACE="$(gradle_value namespace)"
APPLICATION_ID="$(gradle_value applicationId)"
MIN_SDK="$(gradle_value minSdk)"
TARGET_SDK="$(gradle_value targetSdk)"
VERSION_CODE="$(gradle_value versionCode)"
VERSION_NAME="$(gradle_value versionName)"
for name in NAMESPACE APPLICATION_ID MIN_SDK TARGET_SDK VERSION_CODE VERSION_NAME; do
  [ -n "${!name}" ] || fail "could not read $name from $APP/build.gradle.kts"
done
say "package $APPLICATION_ID (namespace $NAMESPACE), minSdk $MIN_SDK, targetSdk $TARGET_SDK"

# --- 3. Resources and manifest ---------------------------------------------------------------
mkdir -p "$WORK/res" "$WORK/gen" "$WORK/classes" "$WORK/stubs" "$WORK/dex"
# Gradle writes the namespace into the merged manifest as `package`; do the same on a copy.
sed -E "0,/<manifest /s//<manifest package=\"$NAMESPACE\" /" "$APP/src/main/AndroidManifest.xml" \
  > "$WORK/AndroidManifest.xml"
grep -q "package=\"$NAMESPACE\"" "$WORK/AndroidManifest.xml" || fail "could not add package= to the manifest"
aapt2 compile --dir "$APP/src/main/res" -o "$WORK/res/compiled.zip"
aapt2 link -o "$WORK/unaligned.apk" -I "$ANDROID_JAR" --manifest "$WORK/AndroidManifest.xml" \
  --java "$WORK/gen" --rename-manifest-package "$APPLICATION_ID" \
  --min-sdk-version "$MIN_SDK" --target-sdk-version "$TARGET_SDK" \
  --version-code "$VERSION_CODE" --version-name "$VERSION_NAME" \
  -A "$APP/src/main/assets" -0 tflite "$WORK/res/compiled.zip"

# --- 4. Java: the stand-ins, then the app against android.jar + the stand-ins ----------------
# Java 8 bytecode: what dx reads, and the language level minSdk 24 offers without desugaring.
JAVAC=(javac -source 8 -target 8 -bootclasspath "$ANDROID_JAR" -encoding UTF-8 -Xlint:-options -nowarn)
find "$HERE/litert-stubs" -name '*.java' > "$WORK/stub-sources.txt"
"${JAVAC[@]}" -d "$WORK/stubs" @"$WORK/stub-sources.txt"
{ find "$APP/src/main/java" -name '*.java'; find "$WORK/gen" -name '*.java'; } > "$WORK/sources.txt"
"${JAVAC[@]}" -cp "$WORK/stubs" -d "$WORK/classes" @"$WORK/sources.txt"
[ -z "$(find "$WORK/classes" -path '*/org/tensorflow/*' -print -quit)" ] || fail "LiteRT stand-ins leaked into the app's classes"

# --- 5. Dex, package, align, sign ------------------------------------------------------------
dx --dex --min-sdk-version="$MIN_SDK" --output="$WORK/dex/classes.dex" "$WORK/classes"
(cd "$WORK/dex" && aapt add "$WORK/unaligned.apk" classes.dex >/dev/null)
APK="$OUT/mobileprune-demo-debug.apk"
zipalign -f -p 4 "$WORK/unaligned.apk" "$WORK/aligned.apk"
# A throwaway debug key, like Android Studio's (never a release key).
keytool -genkeypair -keystore "$WORK/debug.keystore" -storepass android -keypass android \
  -alias androiddebugkey -dname "CN=Android Debug,O=Android,C=US" -keyalg RSA -keysize 2048 \
  -validity 10000 -noprompt >/dev/null 2>&1
apksigner sign --ks "$WORK/debug.keystore" --ks-pass pass:android --key-pass pass:android \
  --min-sdk-version "$MIN_SDK" --out "$APK" "$WORK/aligned.apk"
apksigner verify --verbose --min-sdk-version "$MIN_SDK" "$APK" > "$OUT/apksigner.txt"
zipalign -c -p 4 "$APK" || fail "$APK is not 4-byte aligned"

# --- 6. Check what a phone's package manager would read ---------------------------------------
aapt dump badging "$APK" > "$OUT/badging.txt"
expect() {  # expect PATTERN WHAT
  grep -Eq "$1" "$OUT/badging.txt" || fail "aapt dump badging: $2 not found (wanted /$1/); see $OUT/badging.txt"
}
expect "^package: name='$APPLICATION_ID' versionCode='$VERSION_CODE' versionName='$VERSION_NAME'" "package, versionCode, versionName"
expect "^sdkVersion:'$MIN_SDK'$" "minSdk $MIN_SDK"
expect "^targetSdkVersion:'$TARGET_SDK'$" "targetSdk $TARGET_SDK"
expect "^launchable-activity: name='$NAMESPACE.MainActivity'" "launcher activity $NAMESPACE.MainActivity"
grep -q '^Verifies$' "$OUT/apksigner.txt" || fail "apksigner verify failed; see $OUT/apksigner.txt"
say "ok: $APK ($(stat -c %s "$APK") bytes, $(grep -c '' "$WORK/sources.txt") Java sources, no LiteRT inside)"
