"""Training one candidate (``trainer``) and its exact int8 reference (``quant``)."""
