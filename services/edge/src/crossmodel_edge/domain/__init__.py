"""The edge's logic: plain Python over the wire types, no I/O."""
