"""The stages a request passes through, in the order `gateway.app` lists them."""
