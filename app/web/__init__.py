"""The web page for people: static ES modules and CSS served by the app itself (no CDN, no
JS build step), talking to the same /v1 API as any other client."""
