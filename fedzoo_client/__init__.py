"""fedzoo client side: the Flower ClientApp and how a node loads its objective (the gRPC
oracle adapter lives in :mod:`fedzoo_oracle`)."""
