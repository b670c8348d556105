"""Patch the lunr bug that makes Material's search box throw on some queries.

lunr (bundled in Material's search worker) minimises the token set of the index by a string key per node:
its final flag, then each edge's character followed by the child's numeric id. With digits among the
characters that key is ambiguous (edge "1" to node 23 reads like edge "12" to node 3 would), so two different
nodes can be merged. The merged token set then yields words the index does not hold, and `Index.query` fails
with "Cannot read properties of undefined (reading '_index')": the search box shows nothing for that query.
Which queries fail depends on every token of the site, so any page edit can move the failure around. Quoting
each edge character makes the key unambiguous.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

LOG = logging.getLogger("mkdocs.hooks.lunr_tokenset")
# The minified `lunr.TokenSet.prototype.toString` loop body of Material 9.x and its fix.
BUGGY = "e=e+s+o.id}return e}"
FIXED = "e=e+JSON.stringify(s)+o.id}return e}"


def patch_worker(site_dir: str) -> list[str]:
    """Rewrite the search worker(s) under `site_dir`; the paths patched (already patched ones count too)."""
    patched = []
    for path in glob.glob(os.path.join(site_dir, "assets", "javascripts", "workers", "search.*.js")):
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        if FIXED in source:
            patched.append(path)
        elif source.count(BUGGY) == 1:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(source.replace(BUGGY, FIXED))
            patched.append(path)
    return patched


def on_post_build(config: Any) -> None:
    if not patch_worker(config["site_dir"]):
        # A new Material release changed the worker: the test of the built site says so too.
        LOG.warning("lunr TokenSet patch not applied: Material's search worker changed")
