"""Views of the test project."""

from django.http import JsonResponse
from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from jwkstash.django import JWTAuthentication, jwt_required


class Me(APIView):
    """A DRF view: the authentication class on the view itself."""

    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response(
            {
                "user": str(request.user),
                "sub": request.auth["sub"],
                "type": type(request.user).__name__,
            }
        )


class MeByDefault(APIView):
    """A DRF view that takes REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES (a dotted path)."""

    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"sub": request.auth["sub"]})


def plain(request):
    """A plain Django view behind the middleware; works with or without a token."""
    claims = request.jwt_claims
    return JsonResponse({"sub": claims["sub"] if claims else None})


@jwt_required
def protected(request):
    """A plain Django view that needs a token."""
    return JsonResponse({"sub": request.jwt_claims["sub"], "user": str(request.user)})


urlpatterns = [
    path("api/me", Me.as_view()),
    path("api/default", MeByDefault.as_view()),
    path("plain", plain),
    path("protected", protected),
]
