"""fedzoo client side: Flower ClientApp, objective loading and the remote-oracle adapter."""
