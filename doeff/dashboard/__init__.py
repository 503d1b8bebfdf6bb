"""`doeff dashboard STORE`: a local web app showing a store's runs (their K stacks as they
move, their steps, their errors) and its cache records, live.

The web framework (Starlette, served by uvicorn) comes with the `doeff[dashboard]` extra and is
imported only by the command and `doeff.dashboard.app`, never by `import doeff`. What the pages
show is computed in `doeff.dashboard.data` from the same readers `doeff runs` and `doeff cache`
use; `doeff.dashboard.guard` holds the safety rules (loopback, token, Host, CSRF, CSP). See
docs/dashboard.md.
"""
