"""The look shared by the portal, the console and the public dashboard.

One layout (Persian, right to left, Bootstrap's RTL build, Vazirmatn), Jinja filters for
Persian digits and Jalali dates, the static assets (vendored from npm, pinned, with their
licences; see ``static/vendor/VERSIONS.txt``), and browser sessions with CSRF protection.
Imports only ``core`` and ``store``.
"""
