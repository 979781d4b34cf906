"""MMS ``config.properties`` profiles and the tuning rules behind them."""
