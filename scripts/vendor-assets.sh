#!/usr/bin/env bash
# Refresh the vendored front-end assets from the npm registry (needs Node.js's npm; the
# running platform does not). Versions are pinned here and in dargah/web/static/vendor/VERSIONS.txt.
set -euo pipefail
BOOTSTRAP=5.3.9 HTMX=2.0.8 CHARTJS=4.6.1
dest="$(cd "$(dirname "$0")/.." && pwd)/dargah/web/static/vendor"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "bootstrap@$BOOTSTRAP" "htmx.org@$HTMX" "chart.js@$CHARTJS" >/dev/null
for f in *.tgz; do mkdir -p "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
cp "bootstrap-$BOOTSTRAP/package/dist/css/bootstrap.rtl.min.css" \
   "bootstrap-$BOOTSTRAP/package/dist/js/bootstrap.bundle.min.js" \
   "bootstrap-$BOOTSTRAP/package/LICENSE" "$dest/bootstrap/"
cp "htmx.org-$HTMX/package/dist/htmx.min.js" "htmx.org-$HTMX/package/LICENSE" "$dest/htmx/"
cp "chart.js-$CHARTJS/package/dist/chart.umd.min.js" "chart.js-$CHARTJS/package/LICENSE.md" "$dest/chartjs/"
echo "vendored bootstrap $BOOTSTRAP, htmx $HTMX, chart.js $CHARTJS into $dest"
