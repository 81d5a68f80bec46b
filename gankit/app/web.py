"""`gankit app RUN [RUN ...]`: the latent explorer as a local web page (Gradio, the optional extra
`gankit[app]`). The widgets here only pass the page's state to gankit.explorer.Explorer, which
makes every picture; this module knows nothing about generators.

Slider moves skip Gradio's event pipeline: a script in the page (HOT_JS) posts the slider values
to the app's own route (HOT_ROUTE, `App.slide`), which draws from a page state the server
remembered when Gradio last drew that part; ~40 ms in Chromium instead of ~300 ms.

Safe by default: it binds 127.0.0.1, reads only the runs named on the command line (the page
picks among them by name; it cannot name a path; the route accepts only tokens of states the
server drew), serves no file of theirs, and checks an uploaded z (size, shape, finite values)
and the route's slider values before using them.
"""

import base64
import hashlib
import html
import json
import math
import random
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import GankitError
from .explorer import NUDGE_DELTAS, N_BASE, PARTS, SLIDER_LIMIT, SLIDER_STEP, Explorer, png_bytes, sheet

MAIN_PX = 256   # the main image's width on the page
ZOOM = 2        # every other picture is drawn at twice the model's resolution (the browser enlarges it)
HOT_ROUTE = "/gankit/slide"  # the sliders' fast path: POST {state, part, values} -> that part's PNG data URLs
HOT_STATES = 256             # page states the fast path remembers (the newest; an older one is answered 404)

# Slider moves are the page's hot path. Through Gradio's event pipeline an update cost ~300 ms in
# Chromium on a 2-core CPU (bench/APP_LATENCY.md), most of it the front end handling the event and
# re-rendering. This script instead posts the values of the z sliders and of the position slider to
# HOT_ROUTE, once per part of the page (the main image with the 8 first, then lab 4's sheet, then
# the strip; only the strip for the position slider), and swaps the pictures' pixels in place. One
# request is in flight at a time; a move meanwhile is sent next, starting again from the first part.
# Each part's HTML carries the token of the page state it was drawn for (run, weights, base vectors,
# class, ...), which every other control changes through Gradio, and the slider values it was drawn
# with: a part that Gradio redraws with values older than the sliders show (a slider moved while
# another control's redraw was on its way, whose answer then replaced or was replaced by it) is
# drawn again through the fast path with the values shown.
HOT_JS = """
() => {
  const holders = {main: '#main', nudge: '#nudge', path: '#strip'};
  let busy = false, next = null;
  async function slide(move) {
    busy = true;
    try {
      for (const part of move.parts) {
        const el = document.querySelector(holders[part] + ' [data-state]');
        if (!el) continue;
        const res = await fetch('__ROUTE__', {method: 'POST', headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({state: el.dataset.state, part, values: move.values, t: move.t})});
        if (!res.ok) { console.warn('gankit: slider update refused:', (await res.json()).error); break; }
        const answer = await res.json();
        if (!el.isConnected) break;  // Gradio redrew this part meanwhile (another control): keep its pictures
        for (const [id, srcs] of Object.entries(answer.pictures))
          document.querySelectorAll('#' + id + ' img').forEach((img, i) => { if (srcs[i]) img.src = srcs[i]; });
        if (next) break;  // a newer move: start again from its first part
      }
    } catch (err) {
      console.warn('gankit: slider update failed:', err);
    }
    busy = false;
    if (next) { const m = next; next = null; slide(m); }
  }
  function request(move) {
    if (next) move.parts = ['main', 'nudge', 'path'].filter(p => move.parts.includes(p) || next.parts.includes(p));
    if (busy) next = move; else slide(move);
  }
  const value = (box, ev) => {
    const input = box && (box.contains(ev.target) ? ev.target : box.querySelector('input[type=range]'));
    return input ? parseFloat(input.value) : null;
  };
  const shown = (ev) => {  // the values the sliders show (ev: the input event setting one, if any)
    const values = [];
    for (let i = 0; i < __SLIDERS__; i++) values.push(value(document.getElementById('slider' + i), ev));
    return {values, t: value(document.getElementById('t'), ev)};
  };
  // Capture phase: this runs before Gradio's handlers, so it reads the value being set.
  document.addEventListener('input', (ev) => {
    if (!ev.target.closest) return;
    const onZ = ev.target.closest('[id^=slider]'), onT = ev.target.closest('#t');
    if (!onZ && !onT) return;
    request({...shown(ev), parts: onZ ? ['main', 'nudge', 'path'] : ['path']});
  }, true);
  // A part Gradio drew with other slider values than the sliders show now: drawn again with these.
  const differs = (a, b) => a !== null && b !== null && Math.abs(a - b) > 1e-6;
  new MutationObserver(() => {
    const now = shown({target: null}), parts = [];
    for (const [part, holder] of Object.entries(holders)) {
      const el = document.querySelector(holder + ' [data-values]');
      if (!el || el.dataset.seen) continue;
      el.dataset.seen = '1';
      const drawn = JSON.parse(el.dataset.values);
      if (drawn.some((x, i) => differs(x, now.values[i])) || (part === 'path' && differs(parseFloat(el.dataset.t), now.t)))
        parts.push(part);
    }
    if (parts.length) request({...now, parts});
  }).observe(document.body, {childList: true, subtree: true});
}
"""


def _gradio():
    try:
        import gradio as gr  # (the [app] extra: only the page needs it)
    except ImportError:
        raise GankitError("gankit app needs Gradio: pip install 'gankit[app]' (or pip install gradio)") from None
    return gr


def run_labels(runs: list[str]) -> list[str]:
    """Names for the run picker: the folder's name, or more of its path where two names clash."""
    paths = [Path(r).resolve() for r in runs]
    for depth in range(1, 6):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def img_tag(img: np.ndarray, width: int | None = None, alt: str = "") -> str:
    """An <img> holding the picture itself as a PNG data URL, drawn with sharp pixels when enlarged.
    Inline pictures arrive with the answer to a slider move: no files written, none fetched."""
    size = f' width="{width}"' if width else ""
    return (f'<img src="{data_url(img)}"{size} alt="{alt}" '
            f'style="image-rendering: pixelated; max-width: none">')


def data_url(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode()


def finite(x) -> bool:
    """A JSON number (not a bool) that is finite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def nudge_sheet(v) -> np.ndarray:
    """Lab 4's 15 x 8 sheet of a Views as one picture."""
    return sheet([tiles for _, tiles in v.nudge])


def figures(images: np.ndarray, captions) -> str:
    """Small captioned pictures in a row, each at ZOOM times its resolution."""
    return "".join(f'<figure style="display:inline-block;margin:2px;text-align:center">'
                   f'{img_tag(x, x.shape[1] * ZOOM)}<figcaption style="font-size:11px">{html.escape(str(c))}</figcaption>'
                   f'</figure>'
                   for x, c in zip(images, captions))


class App:
    """The explorers of the named runs, and the handlers the page's events call."""

    def __init__(self, runs: list[str], device: str = "auto", sliders: int = 8):
        self.explorers = {label: Explorer(r, device=device, sliders=sliders)
                          for label, r in zip(run_labels(runs), runs)}
        self.k = max(e.n_sliders for e in self.explorers.values())  # dimension and direction sliders
        self.saves = Path(tempfile.mkdtemp(prefix="gankit-app-"))
        self._states: OrderedDict[str, tuple] = OrderedDict()  # token -> page state, for `slide`
        self._states_lock = threading.Lock()
        self._drawn = 0

    def explorer(self, label: str) -> Explorer:
        if label not in self.explorers:  # the page can only choose among the runs given at start
            raise GankitError(f"unknown run {label!r}; this app serves: {', '.join(self.explorers)}")
        return self.explorers[label]

    # ---- what a run change sets up -------------------------------------------------------------
    def run_setup(self, label: str) -> dict:
        e = self.explorer(label)
        dims, source = e.ranked_dims()
        nudge_choices = [(f"z[{d}] (rank {i + 1})", d) for i, d in enumerate(dims)]
        nudge_choices += [(f"z[{d}]", d) for d in range(e.z_dim) if d not in dims]
        meta = f"**{html.escape(label)}**: z_dim {e.z_dim}, images {'x'.join(map(str, e.img_shape))}"
        if e.class_names:
            meta += f", {len(e.class_names)} classes"
        return {"weights": e.weights, "dims": dims, "axes": [label for label, _ in e.slider_axes()],
                "classes": [(n, i) for i, n in enumerate(e.class_names)],
                "nudge": nudge_choices, "info": f"{meta}. Sliders: the {len(dims)} most influential dimensions, "
                                                f"{source}; then G's top {e.n_dirs} SeFa directions (each mixes "
                                                f"many dimensions; `gankit explore directions`)."}

    def slider_marks(self, label: str, base: np.ndarray, main: int) -> list[float]:
        e = self.explorer(label)
        main = min(max(0, int(main)), len(base) - 1)
        marks = e.marks(base, main)
        return marks + [0.0] * (self.k - len(marks))

    # ---- the pictures ---------------------------------------------------------------------------
    def render(self, parts, label, weights, base, main, cls, nudge_dim, to_seed, t, *values) -> dict[str, str]:
        """The HTML of the page's pictures in `parts` (see Explorer.views) for its state, by name
        ("main", "eight", "classes", "nudge", "strip", "at_t"), and "timing". Each part's HTML
        carries the token of this state (all but the slider values), from which the sliders'
        fast path (`slide`) redraws that part, and the slider values it was drawn with."""
        t0 = time.perf_counter()
        e = self.explorer(label)
        base = np.array(base, dtype=np.float32)
        v = e.views(weights, base, int(main or 0), list(values[:e.n_sliders]), cls,
                    int(nudge_dim), int(to_seed or 0), float(t), parts=parts)
        token = self.remember(label, weights, base, int(main or 0), cls, int(nudge_dim), int(to_seed or 0), float(t))
        self._drawn += 1  # in every picture's HTML, so that the page never skips an update as unchanged
        drawn = html.escape(json.dumps([None if x is None else float(x) for x in values[:e.n_sliders]]))
        tag = f'data-state="{token}" data-n="{self._drawn}" data-values="{drawn}" data-t="{float(t)}"'
        out = {}
        if v.main is not None:
            out["main"] = f'<div {tag}>{img_tag(v.main, MAIN_PX, "main image")}</div>'
            out["eight"] = f'<div {tag}>{figures(v.base, range(1, len(v.base) + 1))}</div>'
            out["classes"] = f'<div {tag}>{figures(v.classes, e.class_names)}</div>' if v.classes is not None else ""
        if v.nudge is not None:  # lab 4's sheet as one PNG, the row labels beside it
            h = (e.img_shape[1] + 2) * ZOOM
            labels = "".join(f'<div style="height:{h}px;line-height:{h}px;text-align:right">{lb}</div>'
                             for lb, _ in v.nudge)
            grid = nudge_sheet(v)
            out["nudge"] = (f'<div {tag} style="display:flex;gap:6px;align-items:flex-start"><div>{labels}</div>'
                            f'{img_tag(grid, grid.shape[1] * ZOOM, "nudge sheet")}</div>')
        if v.strip is not None:
            out["strip"] = f'<div {tag}>{figures(v.strip, [f"{x:.2f}" for x in np.linspace(0, 1, len(v.strip))])}</div>'
            out["at_t"] = f'<div {tag}>{img_tag(v.at_t, 160, "image at the position")}</div>'
        out["timing"] = f"{' + '.join(parts)}: {(time.perf_counter() - t0) * 1000:.0f} ms on the server"
        return out

    # ---- the slider's fast path (HOT_ROUTE) ---------------------------------------------------
    def remember(self, *state) -> str:
        """A token for a page state (label, weights, base, main, cls, nudge_dim, to_seed, t), kept
        for `slide` (the newest HOT_STATES of them)."""
        label, weights, base, *rest = state
        token = hashlib.sha1(repr((label, weights, base.tobytes(), *rest)).encode()).hexdigest()[:20]
        with self._states_lock:
            self._states[token] = state
            self._states.move_to_end(token)
            while len(self._states) > HOT_STATES:
                self._states.popitem(last=False)
        return token

    def slide(self, payload) -> dict:
        """One part of the page ("main", "nudge" or "path") redrawn for a remembered state and new
        slider values: {"pictures": {element id: [PNG data URL, ...]}, "ms": server time}. Anything
        but {"state": a known token, "part": a part, "values": at most k finite numbers or nulls,
        optionally "t": the position slider} is refused: GankitError, or KeyError for a token no
        longer (or never) remembered. Values are clamped to the sliders' ranges."""
        t0 = time.perf_counter()
        if not isinstance(payload, dict) or payload.get("part") not in PARTS:
            raise GankitError(f'expected a JSON object {{"state", "part" (one of {", ".join(PARTS)}), "values"}}')
        with self._states_lock:
            state = self._states.get(str(payload.get("state")))
        if state is None:
            raise KeyError("unknown or forgotten page state: a Gradio update of the page draws it anew")
        values = payload.get("values")
        if not isinstance(values, list) or len(values) > self.k or not all(x is None or finite(x) for x in values):
            raise GankitError(f"values: a list of at most {self.k} finite numbers (or nulls)")
        label, weights, base, main, cls, nudge_dim, to_seed, t = state
        if payload.get("t") is not None:  # the position slider, moved
            t = payload["t"]
            if not finite(t):
                raise GankitError("t: a finite number from 0 to 1")
        e = self.explorer(label)
        values = [None if x is None else min(SLIDER_LIMIT, max(-SLIDER_LIMIT, float(x))) for x in values]
        v = e.views(weights, base, main, values[:e.n_sliders], cls, nudge_dim, to_seed, t, parts=(payload["part"],))
        shown = {"main": [v.main] if v.main is not None else [], "eight": v.base if v.main is not None else [],
                 "classes": v.classes if v.classes is not None else [],
                 "nudge": [nudge_sheet(v)] if v.nudge is not None else [],
                 "strip": v.strip if v.strip is not None else [], "at-t": [v.at_t] if v.at_t is not None else []}
        return {"pictures": {k: [data_url(x) for x in xs] for k, xs in shown.items() if len(xs)},
                "ms": round((time.perf_counter() - t0) * 1000, 1)}

    def save(self, label, weights, base, main, cls, *values) -> tuple[list[str], str]:
        """z.npy (the main vector as shown) and image.png (its image, at the model's resolution) in
        a new folder, and the command that remakes the image from z.npy."""
        e = self.explorer(label)
        v = e.views(weights, np.asarray(base, dtype=np.float32), int(main or 0), list(values[:e.n_sliders]),
                    cls, 0, 0, 0.0, parts=("main",))
        folder = Path(tempfile.mkdtemp(dir=self.saves))
        np.save(folder / "z.npy", v.z)
        (folder / "image.png").write_bytes(png_bytes(v.main))
        cmd = f"gankit sample {e.run} --z z.npy" + ("" if weights == e.weights[0] else " --no-ema")
        if e.class_names:
            cmd += f" --class {int(cls or 0)}"
        return [str(folder / "z.npy"), str(folder / "image.png")], f"Remake this image: `{cmd}`"


def build(app: App):
    """The Gradio Blocks of the explorer: the page's layout, then its events."""
    gr = _gradio()
    with gr.Blocks(title="gankit explorer", analytics_enabled=False) as demo:
        page = layout(gr, app)
        wire(gr, app, page, demo)
    return demo


def layout(gr, app: App) -> SimpleNamespace:
    """The page's components, by name: the controls on the left, the pictures on the right, lab 4's
    sheet and the slerp strip below."""
    label = list(app.explorers)[0]
    first = app.run_setup(label)
    base0 = app.explorer(label).seed_vectors(0)
    gr.Markdown("## gankit latent explorer\nA seed stands for its 8 latent vectors (the images of "
                "`gankit sample RUN --seed S`); the first, or the one you click, is shown large. A slider rests "
                "at that vector's own value and then changes nothing; moved, it sets its dimension of all 8 "
                "vectors (the labs' sweep, -4 to +4). Back at its mark, the seed's images return.")
    page = SimpleNamespace(first=first, info=gr.Markdown(first["info"], elem_id="info"), base=gr.State(base0),
                           picks=[(str(i + 1), i) for i in range(N_BASE)])
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            controls(gr, app, page, app.slider_marks(label, base0, 0))
        with gr.Column(scale=2):
            pictures(gr, page)
    with gr.Row():
        with gr.Column():
            page.nudge_dim = gr.Dropdown(first["nudge"], value=first["nudge"][0][1], label="nudged dimension",
                                         elem_id="nudge-dim")
            gr.Markdown(f"**lab 4's sheet:** the dimension moved by {', '.join(map(str, NUDGE_DELTAS))} both "
                        f"ways (rows) in each of the 8 images (columns)")
            page.nudge = gr.HTML(elem_id="nudge")
        with gr.Column():
            with gr.Row():
                page.to_seed = gr.Number(1, precision=0, label="interpolate to seed", minimum=0, elem_id="to-seed")
                page.t = gr.Slider(0, 1, value=0.5, step=0.01, label="position (slerp)", elem_id="t")
            gr.Markdown("**slerp** from the main vector to the same vector of that seed")
            page.strip = gr.HTML(elem_id="strip")
            page.at_t = gr.HTML(elem_id="at-t")
    return page


def controls(gr, app: App, page: SimpleNamespace, marks0: list[float]) -> None:
    """The left column: run, weights, seed, class, the z sliders, reset, and the z upload."""
    first, labels = page.first, list(app.explorers)
    page.run = gr.Dropdown(labels, value=labels[0], label="run", visible=len(labels) > 1, elem_id="run")
    page.weights = gr.Radio(first["weights"], value=first["weights"][0], label="weights", elem_id="weights")
    with gr.Row():
        page.seed = gr.Number(0, precision=0, label="seed", minimum=0, elem_id="seed")
        page.rand = gr.Button("random seed", elem_id="random")
    page.cls = gr.Dropdown(first["classes"] or [("-", 0)], value=0, label="class",
                           visible=bool(first["classes"]), elem_id="class")
    page.sliders = []
    for i in range(app.k):
        axis = first["axes"][i] if i < len(first["axes"]) else None
        page.sliders.append(gr.Slider(-SLIDER_LIMIT, SLIDER_LIMIT, value=marks0[i], step=SLIDER_STEP,
                                      label=axis or "", visible=axis is not None, elem_id=f"slider{i}"))
    page.reset = gr.Button("reset sliders", elem_id="reset")
    z_dim = app.explorer(labels[0]).z_dim
    page.upload = gr.File(label=f"load z (.npy, .pt or .json: ({z_dim},) or up to {N_BASE} rows)",
                          file_types=[".npy", ".pt", ".json"], type="filepath", elem_id="upload")
    page.picture = gr.File(label="or a picture: projected into z (gankit invert), then edit it with the sliders",
                           file_types=["image"], type="filepath", elem_id="picture")
    page.status = gr.Markdown("", elem_id="status")


def pictures(gr, page: SimpleNamespace) -> None:
    """The right column: the main image, the class row, the seed's 8, the pick, and saving."""
    with gr.Row():
        with gr.Column():
            gr.Markdown("**main image**")
            page.big = gr.HTML(elem_id="main")
        with gr.Column(visible=bool(page.first["classes"])) as page.classes_box:
            gr.Markdown("**this z as every class**")
            page.classes = gr.HTML(elem_id="classes")
    gr.Markdown("**the 8 images of the seed, sliders applied**")
    page.eight = gr.HTML(elem_id="eight")
    page.main = gr.Radio(page.picks, value=0, label="shown large", elem_id="pick")
    with gr.Row():
        page.save = gr.Button("save z and image", elem_id="save")
        page.timing = gr.Markdown("", elem_id="timing")
    page.saved = gr.File(label="saved", file_count="multiple", interactive=False, elem_id="saved")
    page.saved_cmd = gr.Markdown("", elem_id="saved-cmd")


class Handlers:
    """The page's event handlers: each passes the page's state to the App and its answer back to
    the components, and shows a refusal in the status line instead of raising."""

    def __init__(self, gr, app: App, page: SimpleNamespace):
        self.gr, self.app, self.page = gr, app, page
        p = page
        self.state_in = [p.run, p.weights, p.base, p.main, p.cls, p.nudge_dim, p.to_seed, p.t, *p.sliders]
        self.shown = {"main": [("main", p.big), ("eight", p.eight), ("classes", p.classes)],
                      "nudge": [("nudge", p.nudge)], "path": [("strip", p.strip), ("at_t", p.at_t)]}

    def painter(self, *parts):
        """An event handler that redraws the pictures of `parts`, and its output components."""
        names = [(k, c) for p in parts for k, c in self.shown[p]] + [("timing", self.page.timing)]
        gr, app = self.gr, self.app

        def paint(*args):
            try:
                drawn = app.render(parts, *args)
            except GankitError as err:
                return (*[gr.update()] * len(names), f"**error:** {err}")
            return (*[drawn[k] for k, _ in names], gr.update())
        return paint, [c for _, c in names] + [self.page.status]

    def unchanged(self, note: str = "") -> tuple:
        return (self.gr.update(), self.gr.update(), *[self.gr.update()] * self.app.k, note)

    def rebase(self, label, b, note=""):
        """A new set of base vectors: the first is shown large, the sliders go to its marks."""
        return (b, self.gr.update(choices=self.page.picks[:len(b)], value=0), *self.app.slider_marks(label, b, 0),
                note)

    def reseed(self, label, s):
        try:
            return self.rebase(label, self.app.explorer(label).seed_vectors(int(s or 0)))
        except GankitError as err:
            return self.unchanged(f"**seed refused:** {err}")

    def marks(self, label, b, m):
        return self.app.slider_marks(label, b, m)

    def load_z(self, label, path):
        if not path:
            return self.unchanged()
        try:
            b = self.app.explorer(label).read_upload(path)
        except (GankitError, OSError) as err:
            return self.unchanged(f"**upload refused:** {err}")
        return self.rebase(label, b, f"loaded {len(b)} latent vector(s) from {Path(path).name}")

    def load_picture(self, label, path):
        if not path:
            return self.unchanged()
        try:
            b, note = self.app.explorer(label).invert_picture(path)
        except (GankitError, OSError) as err:
            return self.unchanged(f"**picture refused:** {err}")
        return self.rebase(label, b, note)

    def change_run(self, label):
        gr, setup = self.gr, self.app.run_setup(label)
        axes = setup["axes"]
        slider_ups = [gr.update(label=axes[i], visible=True) if i < len(axes) else gr.update(visible=False)
                      for i in range(self.app.k)]
        has_cls = bool(setup["classes"])
        return (setup["info"], gr.update(choices=setup["weights"], value=setup["weights"][0]),
                gr.update(choices=setup["classes"] or [("-", 0)], value=0, visible=has_cls),
                gr.update(visible=has_cls),
                gr.update(choices=setup["nudge"], value=setup["nudge"][0][1]), *slider_ups, None, "")

    def save(self, *args):
        try:
            return self.app.save(*args)
        except GankitError as err:
            return None, f"**error:** {err}"

    def draw(self, listen, *groups):
        """Call `listen` (an event listener) with the painter of the first group of parts, and
        chain one painter per further group: the main image first, as it comes soonest."""
        fn, outputs = self.painter(*groups[0])
        event = listen(fn, self.state_in, outputs, **FAST)
        for parts in groups[1:]:
            fn, outputs = self.painter(*parts)
            event = event.then(fn, self.state_in, outputs, **FAST)


FAST = dict(trigger_mode="always_last", show_progress="hidden")  # what every picture event runs with


def wire(gr, app: App, page: SimpleNamespace, demo) -> None:
    """The page's events. The z sliders and the position slider t redraw through the fast path
    (HOT_JS), not through Gradio."""
    h, p = Handlers(gr, app, page), page
    everything = (("main",), ("nudge", "path"))
    h.draw(p.cls.change, *everything)
    h.draw(p.weights.change, *everything)
    h.draw(p.nudge_dim.change, ("nudge",))
    h.draw(p.to_seed.change, ("path",))
    rebased = [p.base, p.main, *p.sliders, p.status]
    p.rand.click(lambda: random.randrange(2 ** 31), None, p.seed)
    # New base vectors or slider marks first, then every picture.
    run_changed = p.run.change(h.change_run, p.run, [p.info, p.weights, p.cls, p.classes_box, p.nudge_dim, *p.sliders,
                                                      p.saved, p.saved_cmd])
    for event in (p.seed.change(h.reseed, [p.run, p.seed], rebased, **FAST),
                  p.reset.click(h.marks, [p.run, p.base, p.main], p.sliders, **FAST),
                  p.main.input(h.marks, [p.run, p.base, p.main], p.sliders, **FAST),
                  p.upload.upload(h.load_z, [p.run, p.upload], rebased),
                  p.picture.upload(h.load_picture, [p.run, p.picture], rebased),
                  run_changed.then(h.reseed, [p.run, p.seed], rebased)):
        h.draw(event.then, *everything)
    h.draw(demo.load, *everything)
    p.save.click(h.save, [p.run, p.weights, p.base, p.main, p.cls, *p.sliders], [p.saved, p.saved_cmd])


def add_hot_route(server, app: App) -> None:
    """POST HOT_ROUTE on Gradio's FastAPI server: App.slide as JSON; a refused request gets 400
    (404 for a state the app no longer remembers), never a traceback."""
    from fastapi import Request  # (comes with Gradio, the [app] extra)
    from fastapi.concurrency import run_in_threadpool  # (as above)
    from fastapi.responses import JSONResponse  # (as above)

    async def slide(request: Request):
        body = await request.body()
        if len(body) > 64 * 1024:
            return JSONResponse({"error": "request too large"}, status_code=413)
        try:
            return JSONResponse(await run_in_threadpool(app.slide, json.loads(body or b"null")))
        except KeyError as err:
            return JSONResponse({"error": err.args[0]}, status_code=404)
        except (GankitError, ValueError) as err:
            return JSONResponse({"error": str(err)}, status_code=400)
    server.add_api_route(HOT_ROUTE, slide, methods=["POST"])


def theme():
    """Gradio's default look with the system's fonts: nothing is fetched from the internet."""
    gr = _gradio()
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(runs: list[str], host: str = "127.0.0.1", port: int | None = None, device: str = "auto",
           sliders: int = 8, block: bool = True):
    """Load the runs (errors before anything is served), build the page and serve it; returns
    (the Blocks, its URL). With block=False it returns at once and serves from a thread."""
    _gradio()
    app = App(runs, device=device, sliders=sliders)
    for label, e in app.explorers.items():
        print(f"{label}: {e.ranked_dims()[1]}")
    demo = build(app)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"gankit app: serving on {host}: anyone who can reach this address can use the explorer of "
              f"{', '.join(app.explorers)} (it shows generated images and lets them download latent vectors; no file "
              f"of the runs is served)")
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
                theme=theme(), max_file_size="1mb", inbrowser=False, share=False, footer_links=[],
                js=HOT_JS.replace("__ROUTE__", HOT_ROUTE.lstrip("/")).replace("__SLIDERS__", str(app.k)))
    add_hot_route(demo.app, app)
    url = demo.local_url
    print(f"gankit app: open {url} (Ctrl-C stops it)", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
            shutil.rmtree(app.saves, ignore_errors=True)
    return demo, url
