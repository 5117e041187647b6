"""The demo action handler: a small ASGI app that places (pretend) orders.

It takes Hasura's action payload (``action``, ``input``, ``session_variables``,
``request_query``) and answers like a real handler would: 200 with the output, or 400 with
``{"message", "code"}`` when the input is not acceptable.
"""

import asyncio
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_QUANTITY = 100
# Long enough to watch the order go from QUEUED to RUNNING to SUCCESS in GraphiQL.
PROCESSING_S = 1.0


async def place_order(request: Request) -> Response:
    """Place an order, after pretending to talk to a slow warehouse system."""
    payload = await request.json()
    order = payload["input"]["input"]
    if not 1 <= order["quantity"] <= MAX_QUANTITY:
        return JSONResponse(
            {
                "message": f"quantity must be between 1 and {MAX_QUANTITY}",
                "code": "invalid-quantity",
            },
            status_code=400,
        )
    await asyncio.sleep(PROCESSING_S)
    return JSONResponse(
        {
            "order_id": str(uuid.uuid4()),
            "product_id": order["product_id"],
            "quantity": order["quantity"],
            "status": "placed",
            "placed_by": payload["session_variables"].get("x-hasura-user-id"),
        }
    )


app = Starlette(routes=[Route("/place_order", place_order, methods=["POST"])])
