"""Write .dvc/plots/offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

`dvc plots show` loads these three libraries from a CDN by default, so its page renders nothing
offline. DVC's `plots.html_template` option takes a page of our own instead; this one carries
the libraries' minified builds (BSD-3-Clause, licences kept in the page) at the versions DVC's
renderer asks for (dvc_render/vega.py). Run it once after changing the versions; it needs npm,
which fetches the three packages from the npm registry:

    .venv/bin/python tools/build_plots_template.py
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"vega": ("5.20.2", "build/vega.min.js"), "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
            "vega-embed": ("6.18.2", "build/vega-embed.min.js")}
# DVC replaces {plot_divs} (and {refresh_tag}) by plain string replacement; there is no {scripts}
# placeholder, so DVC's CDN <script> tags are never added.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{libraries}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main() -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, build) in PACKAGES.items():
            out = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=tmp, check=True,
                                 capture_output=True, text=True).stdout.split()[-1]
            with tarfile.open(Path(tmp) / out) as tar:
                code = tar.extractfile(f"package/{build}").read().decode()
                licence = tar.extractfile("package/LICENSE").read().decode()
            assert "</script" not in code, f"{name}: cannot be inlined as is"
            scripts.append(f"    <!-- {name}@{version} ({build}), from the npm registry. Its licence:\n"
                           f"{licence.replace('--', '- -')}\n    -->\n    <script>{code}</script>")
    page = PAGE.format(libraries="\n".join(scripts), refresh_tag="{refresh_tag}", plot_divs="{plot_divs}")
    target = ROOT / ".dvc" / "plots" / "offline.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    print(f"{target.relative_to(ROOT)}: {len(page):,} bytes")


if __name__ == "__main__":
    main()
