"""The archive builder: validate inputs, then write MMS ``.mar`` archives."""
