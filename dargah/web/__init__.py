"""The look shared by the portal, the console and the public dashboard.

Two layouts, both Persian and right to left with Vazirmatn: ``gov.html``, the citizens'
design system (``static/dargah.css``, hand-written, inlined in each page; docs/design.md), and
``layout.html`` on Bootstrap's RTL build for the operator's pages. Jinja filters for Persian
digits and Jalali dates, the static assets (vendored from npm, pinned, with their licences;
see ``static/vendor/VERSIONS.txt``) served with fingerprints and a year's caching, and
browser sessions with CSRF protection. Imports only ``core`` and ``store``.
"""
