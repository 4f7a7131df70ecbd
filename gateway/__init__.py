"""paygate: a CNAPS2 (HVPS/BEPS) gateway between a bank's core system and the central bank."""
