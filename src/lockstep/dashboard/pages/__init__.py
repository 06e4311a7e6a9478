"""One module per page of the dashboard, each registering its routes on the router."""
