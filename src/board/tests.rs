// Unit tests of the board rules.
