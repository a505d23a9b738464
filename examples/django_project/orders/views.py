from django.db import transaction
from django.http import HttpRequest, JsonResponse

from .models import Order
from .tasks import count_orders


def create_order(request: HttpRequest) -> JsonResponse:
    """Save the order, and queue the count only once the row is committed: a worker that
    ran before the commit would not see it."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "tea"))
        count_orders.delay_on_commit()
    return JsonResponse({"order": order.pk})
