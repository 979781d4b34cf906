"""``config/``: MMS ``config.properties`` profiles and the tuning rules behind them (``profiles``, with the
rendered ``*.properties`` files), and the price table (``prices.json``, read by ``prices``)."""
