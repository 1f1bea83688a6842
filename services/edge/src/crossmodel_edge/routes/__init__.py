"""HTTP routers, one module per API surface; each only translates HTTP to calls and back."""
