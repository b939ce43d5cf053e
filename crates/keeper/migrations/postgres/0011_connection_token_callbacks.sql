-- Issue 16: customer-managed credentials (DESIGN.md §14). A connection whose Zoom
-- access tokens come from the customer's own server: zoomkeeper GETs this URL for
-- each new token and holds no refresh token. The URL carries the customer's secret
-- in its query string, so it is sealed (vault envelope), like the tokens.
ALTER TABLE zoom_oauth_connections ADD COLUMN access_token_callback_url bytea;
