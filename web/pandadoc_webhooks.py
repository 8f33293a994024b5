"""(placeholder: filled in by its owner)"""

from flask import Blueprint

bp = Blueprint("pandadoc_webhooks", __name__)
