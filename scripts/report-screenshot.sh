#!/usr/bin/env bash
# Screenshots the HTML report of a demo run with headless Chromium.
#
#   bash scripts/report-screenshot.sh [out.png]     # default: docs/report.png
#
# Builds mara (release), runs `mara demo` in a temporary directory, renders
# `mara report --html` of it and screenshots the page at 1280x1400. Installs
# Chromium with .ci/deps first if it is missing. No network beyond that.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/docs/report.png}"
case "$out" in
  /*) ;;
  *) out="$PWD/$out" ;;
esac

cd "$root"
echo "report-screenshot: building mara (release)" >&2
cargo build --release --locked --quiet
mara="$root/target/release/mara"

if ! command -v chromium >/dev/null 2>&1; then
  "$root/.ci/deps"
fi
chromium="$(command -v chromium || true)"
if [ -z "$chromium" ]; then
  echo "report-screenshot: chromium is still missing after .ci/deps" >&2
  exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/mara-report-shot.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# The demo makes its own repository: keep the caller's run, identity and git
# location out of it.
unset MARA_RUN MARA_INSTANCE GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_COMMON_DIR

# A demo instance can die of a false "was rewritten" error under load (a known
# ledger race): try the demo up to three times, each in a new directory.
demo=""
for attempt in 1 2 3; do
  if "$mara" demo --dir "$tmp/d$attempt" >"$tmp/demo.log" 2>&1; then
    demo="$tmp/d$attempt"
    break
  fi
  echo "report-screenshot: mara demo failed (attempt $attempt)" >&2
done
if [ -z "$demo" ]; then
  cat "$tmp/demo.log" >&2
  exit 1
fi
(cd "$demo/project" && "$mara" report --html "$tmp/run.html") >&2

# Headless, offline, its own profile; killed if it takes more than a minute.
if ! timeout --kill-after=5 60 "$chromium" \
  --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/chromium" \
  --screenshot="$tmp/report.png" --window-size=1280,1400 --hide-scrollbars \
  "file://$tmp/run.html" >"$tmp/chromium.log" 2>&1; then
  cat "$tmp/chromium.log" >&2
  echo "report-screenshot: chromium failed" >&2
  exit 1
fi
if [ ! -s "$tmp/report.png" ]; then
  cat "$tmp/chromium.log" >&2
  echo "report-screenshot: chromium wrote no screenshot" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
cp "$tmp/report.png" "$out"
echo "report-screenshot: wrote $out ($(wc -c <"$out") bytes)"
