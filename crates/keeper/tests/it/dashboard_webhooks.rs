//! Dashboard pages for webhooks, bot platforms and connect links (being built).
