"""(placeholder: filled in by its owner)"""

from flask import Blueprint

bp = Blueprint("stripe_webhooks", __name__)
