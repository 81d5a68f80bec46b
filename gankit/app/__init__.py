"""The browser explorer (the [app] extra): `gankit app RUN` serves it. explorer.py makes every
picture from a generator, without web code; web.py is the Gradio page around it. Gradio is
imported when the page is built, so this package imports without the extra."""
from .explorer import Explorer
from .web import App, launch

__all__ = ["App", "Explorer", "launch"]
