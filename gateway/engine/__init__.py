"""Rules as data: profiles, rule files, the expression compiler and the vectorized evaluator."""
