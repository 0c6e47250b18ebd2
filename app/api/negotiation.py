"""Content negotiation between JSON and one other representation of a resource."""

from __future__ import annotations


def prefers_json(accept: str | None, other: str) -> bool:
    """Whether the Accept header ranks application/json above ``other`` (a media type such as
    ``text/tab-separated-values``); ``other`` wins ties, so it is the default."""
    quality = {"application/json": 0.0, other: 0.0}
    for part in (accept or "*/*").split(","):
        media, *params = (p.strip().lower() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        for media_type in quality:
            if media in (media_type, media_type.split("/")[0] + "/*", "*/*"):
                quality[media_type] = max(quality[media_type], q)
    return quality["application/json"] > quality[other]
