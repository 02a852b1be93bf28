-- Where each server serves the web client (`--web-listen`), as the URL a browser opens:
-- `http://host:port` or `https://host:port`; NULL for a server without one. The page moves
-- between these when its server dies, and the WebSockets accept these origins.
ALTER TABLE server_info ADD COLUMN web_url TEXT;
