"""Small pieces every room uses: the error type, the ten languages, atomic writes, strict JSON Lines, paths."""
