// Runtime settings. A static deployment (Dockerfile.client) rewrites this
// file at start-up; an empty serverUrl means "the server that serves this page".
window.AUDIOBOOK_CONFIG = { serverUrl: "" };
