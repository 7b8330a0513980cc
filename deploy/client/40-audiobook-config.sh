#!/bin/sh
# Run by the nginx image's entrypoint (/docker-entrypoint.d/) before nginx
# starts: writes the web app's config.js from the environment, so the same
# image can point at any AudioBook server.
#   SERVER_URL  the server's public URL (https://api.example.com); empty means
#               the page's own origin.
set -eu

html=${AUDIOBOOK_HTML_DIR:-/usr/share/nginx/html}
url=${SERVER_URL:-}
# No trailing slash; the app appends paths like /onboard.
url=${url%/}

case "$url" in
    "" | http://* | https://*) ;;
    *)
        echo "40-audiobook-config.sh: SERVER_URL must start with http:// or https:// (got: $url)" >&2
        exit 1
        ;;
esac
case "$url" in
    *'"'* | *\\* | *'<'* | *'>'* | *' '*)
        echo "40-audiobook-config.sh: SERVER_URL contains a character not allowed in a URL (got: $url)" >&2
        exit 1
        ;;
esac

cat > "$html/config.js" <<JS
window.AUDIOBOOK_CONFIG = { serverUrl: "$url" };
JS
echo "40-audiobook-config.sh: config.js points the web app at ${url:-its own origin}"
