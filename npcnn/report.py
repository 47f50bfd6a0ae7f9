"""A self-contained HTML report: figures embedded as base64 PNG, captions saying what each view means.

    page = Report("What the emotion model sees")
    page.section("Prediction", text="...", table=[("happy", "0.91"), ...])
    page.figure(fig, "Grad-CAM", "Where the evidence for the class lies in the last conv layer.")
    page.write("report.html")           # atomic: a complete file or none

No computation here: the caller passes finished matplotlib Figures and strings.
"""
import base64
import html
import io

from .atomic import atomic_open

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#fafafa;color:#222}
header{background:#1f3b57;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px} header p{margin:6px 0 0;opacity:.85}
main{max-width:1200px;margin:0 auto;padding:8px 32px 48px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:8px;margin:18px 0;padding:14px 20px}
h2{font-size:19px;margin:4px 0 8px;color:#1f3b57}
figure{margin:14px 0;display:inline-block;max-width:100%;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#555;max-width:900px;margin-top:4px}
figcaption b{color:#222}
pre{background:#f4f4f4;padding:10px;overflow-x:auto;font-size:12px}
table{border-collapse:collapse;font-size:14px} td,th{padding:3px 12px;border-bottom:1px solid #eee;text-align:left}
.bar{display:inline-block;height:10px;background:#4a90d9;vertical-align:middle}
nav a{margin-right:14px;font-size:13px}
"""


def figure_png(fig, dpi=100):
    """A matplotlib Figure -> PNG bytes (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class Report:
    """An HTML page built section by section; :meth:`write` puts it on disk atomically."""

    def __init__(self, title, subtitle=""):
        self.title, self.subtitle = title, subtitle
        self._sections = []

    def section(self, heading, text="", table=None, pre=None, bars=None):
        """Start a section: a heading, a paragraph, an optional table of rows, preformatted text, or
        ``bars`` = [(label, value in 0..1)] drawn as a bar chart in HTML."""
        parts = [f"<h2 id='s{len(self._sections)}'>{html.escape(heading)}</h2>"]
        if text:
            parts.append(f"<p>{html.escape(text)}</p>")
        if pre:
            parts.append(f"<pre>{html.escape(pre)}</pre>")
        if table:
            head, *rows = table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                                   for r in rows) + "</table>")
        if bars:
            parts.append("<table>" + "".join(
                f"<tr><td>{html.escape(str(label))}</td><td><span class='bar' style='width:{int(300 * v)}px'>"
                f"</span> {v:.3f}</td></tr>" for label, v in bars) + "</table>")
        self._sections.append([heading, parts])
        return self

    def figure(self, fig, title, caption="", dpi=100):
        """Add a figure (embedded as PNG) with a bold title and a caption to the current section."""
        return self.image(figure_png(fig, dpi), title, caption)

    def image(self, png, title, caption=""):
        """Add PNG bytes (already rendered) with a bold title and a caption to the current section."""
        data = base64.b64encode(png).decode("ascii")
        if not self._sections:
            self.section(title)
        self._sections[-1][1].append(
            f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)}</figcaption></figure>")
        return self

    def html(self):
        nav = "".join(f"<a href='#s{i}'>{html.escape(h)}</a>" for i, (h, _) in enumerate(self._sections))
        body = "".join(f"<section>{''.join(parts)}</section>" for _, parts in self._sections)
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                f"</title><meta name='viewport' content='width=device-width,initial-scale=1'><style>{_CSS}</style>"
                f"</head><body><header><h1>{html.escape(self.title)}</h1><p>{html.escape(self.subtitle)}</p>"
                f"</header><main><nav>{nav}</nav>{body}</main></body></html>")

    def write(self, path):
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(self.html())
        return path
