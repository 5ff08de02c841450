from django.urls import path

from proxy import views

urlpatterns = [
    path("chat/completions", views.chat_completions, name="v1-chat-completions"),
    path("embeddings", views.embeddings, name="v1-embeddings"),
    path("models", views.models, name="v1-models"),
    path("messages", views.anthropic_messages, name="v1-messages"),
]
