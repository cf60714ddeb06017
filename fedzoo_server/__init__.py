"""fedzoo server side: Flower ServerApp and Strategy (decode, call fedzoo, encode)."""
