#!/usr/bin/env bash
# Set up an emulated aarch64 Python 3.11 with the aarch64 ai-edge-litert wheel, so that
# `mobileprune bench` runs LiteRT's ARM kernels (XNNPACK NEON, including its sparse path)
# on an x86 machine through qemu-user. Everything comes from Debian and PyPI.
#
#   bash benchmarks/arm64/setup.sh            # idempotent; ~60 MB under $MOBILEPRUNE_ARM64_HOME
#   benchmarks/arm64/python -m mobileprune bench model.tflite
#   mobileprune latency-table model.keras --target emulated-aarch64 --out emulated.json   # a latency table timed here
#
# What it does (each step is skipped when already done):
#   1. installs qemu-user-static from Debian (host package; no binfmt registration needed),
#   2. downloads Debian 12's arm64 python3.11 and its libraries with a *private* apt
#      configuration (own lists, own status file, architecture arm64) and unpacks them with
#      `dpkg -x` into a sysroot: the host's apt sources and dpkg architectures are untouched,
#   3. installs the manylinux aarch64 wheels (ai-edge-litert==$LITERT_VERSION, numpy and the
#      runtime requirements of mobileprune) into a target folder with the host's pip.
#
# Why ai-edge-litert 1.4.0 while pyproject.toml asks for >=2.3: the package index has no Linux
# aarch64 wheel of ai-edge-litert 2.x (checked with `pip download --platform manylinux_2_{17..39}_aarch64
# --python-version 3.10/3.11/3.12/3.13 "ai-edge-litert>=2.3"`: only 1.1.0-1.4.0 exist), and 1.4.0 is the
# LiteRT line of the Android app's 1.4.1. The emulated environment never installs mobileprune's own
# metadata (the checkout is on PYTHONPATH) nor the `>=2.3` pin: its runtime side needs only what
# requirements-runtime.txt lists plus one runtime, and any LiteRT/tflite-runtime works (see the
# README's device install, `pip install --no-deps`). So the emulated install is consistent in itself;
# the pip "dependency resolver" ERROR once printed here compared the *host* environment's packages
# (mobileprune, ai-edge-quantizer: ai-edge-litert>=2.3) with the wheels put in the target folder,
# which the host never imports; --no-warn-conflicts turns that false alarm off.
set -euo pipefail

ROOT="${MOBILEPRUNE_ARM64_HOME:-$HOME/.cache/mobileprune/arm64}"
LITERT_VERSION="${LITERT_VERSION:-1.4.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SYSROOT="$ROOT/sysroot"
SITE="$ROOT/site-$LITERT_VERSION"
APT_DIR="$ROOT/apt"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

log() { echo "[arm64 setup] $*" >&2; }

# 1. qemu-user-static: runs aarch64 Linux programs on this CPU.
if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  log "installing qemu-user-static from Debian"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static
fi

# 2. arm64 CPython 3.11 from Debian, unpacked into a private sysroot.
if [ ! -x "$SYSROOT/usr/bin/python3.11" ]; then
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
  touch "$APT_DIR/status"
  APT_OPTS=(
    -o APT::Architecture=arm64 -o APT::Architectures=arm64
    -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache"
    -o Dir::State::status="$APT_DIR/status"
  )
  # apt's download sandbox user cannot write into a private folder under root's home.
  if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o APT::Sandbox::User=root); fi
  log "reading Debian's arm64 package lists (private apt state in $APT_DIR)"
  apt-get "${APT_OPTS[@]}" update -q >&2
  # Runtime closure of the interpreter and its C extensions; tools (perl, dpkg, tar) are not needed.
  mapfile -t PACKAGES < <(
    apt-cache "${APT_OPTS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances --no-pre-depends \
      python3.11-minimal libpython3.11-stdlib libstdc++6 \
      | grep -v '^[ <]' | sort -u \
      | grep -Ev '^(dpkg|perl|perl-base|perl-modules-.*|libperl.*|install-info|tar|mailcap|mime-support|media-types|readline-common|libgdbm-compat4)$'
  )
  log "downloading ${#PACKAGES[@]} arm64 packages"
  (cd "$APT_DIR/debs" && apt-get "${APT_OPTS[@]}" download "${PACKAGES[@]}" >&2)
  mkdir -p "$SYSROOT"
  for deb in "$APT_DIR"/debs/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
fi

# 3. aarch64 wheels for the TensorFlow-free runtime side of mobileprune.
if [ ! -f "$SITE/.complete" ]; then
  log "installing aarch64 wheels: ai-edge-litert==$LITERT_VERSION and mobileprune's runtime requirements"
  rm -rf "$SITE"
  python3 -m pip install -q --disable-pip-version-check --no-warn-conflicts --no-compile --target "$SITE" \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
    --python-version 3.11 --implementation cp --only-binary=:all: \
    "ai-edge-litert==$LITERT_VERSION" -r "$REPO/requirements-runtime.txt"
  touch "$SITE/.complete"
fi

# Smoke test: the emulated interpreter imports LiteRT and reports an ARM machine.
MOBILEPRUNE_ARM64_HOME="$ROOT" LITERT_VERSION="$LITERT_VERSION" "$HERE/python" -c \
  "import platform, ai_edge_litert, numpy; print('[arm64 setup] ok:', platform.machine(), 'numpy', numpy.__version__)" >&2
