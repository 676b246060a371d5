"""`evaluator annotate`: a local web page to label annotation batches one item at a time.

`queue` reads batches and writes labels through `labels import`'s path, `app` is the aiohttp
application (pages from `templates/`, the keyboard script and stylesheet from `static/`),
`security` the start-up token and CSRF checks, `server` listens and prints the link.
"""
