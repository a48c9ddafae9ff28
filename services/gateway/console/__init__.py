"""The web console: a page served at `/` that drives the API from a browser.

- `routes.py` — the page, its static files and the sign-in routes (`/console/session`, `/console/whoami`).
- `static/` — plain HTML, CSS and ES modules (no build step, nothing from a CDN): `app.js` is the shell
  (hash router, nav, sign-in), `pages/*.js` one module per page; a new page is one module and one line in
  `app.js`'s route table.
"""

from scriptbus.gateway.console.routes import router

__all__ = ["router"]
