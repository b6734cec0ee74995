"""InstantMesh sparse-view reconstruction: cameras, encoder, triplane transformer, heads, mesh extraction."""
