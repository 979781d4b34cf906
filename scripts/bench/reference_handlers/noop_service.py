"""The MMS floor: a handler that does nothing but answer.

Served next to a model on the same server, its round trip with the same body
is what MMS itself costs per request (frontend, worker protocol, body copies
into the Python worker), with no decode, no forward pass. The answer has the
size of a top-5 classification answer, so both sides send back as much.
"""
import json

ANSWER = json.dumps([{"probability": 0.2, "class": "n%08d placeholder class %d" % (i, i)} for i in range(5)])


def handle(data, context):
    if data is None:  # MMS calls a function entry point with None when it loads the model
        return None
    return [ANSWER for _ in data]
