"""Products and prices, stock, coupons (operators write; anyone reads products)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from api.deps import Operator, PlatformDep
from api.schemas import (
    CouponIn,
    CouponOut,
    ImageOut,
    PriceIn,
    PriceOut,
    ProductIn,
    ProductOut,
    StockIn,
    StockOut,
    VariantOut,
    money,
    plain,
)
from api.services import catalog
from domains.coupons import service as coupons
from domains.coupons.models import Coupon
from domains.coupons.statuses import DiscountType
from domains.inventory import service as inventory
from domains.inventory.models import InventoryItem
from domains.products import service as products
from domains.products.models import ProductPrice
from domains.products.statuses import ProductStatus
from kit.money import Money

router = APIRouter(tags=["catalog"])


def _price_out(price: ProductPrice) -> PriceOut:
    return PriceOut(
        id=price.id,
        currency=price.currency,
        amount=money(price.amount, price.currency),
        valid_from=price.valid_from,
        valid_to=price.valid_to,
    )


def _product_out(view: products.ProductView) -> ProductOut:
    return ProductOut(
        id=view.product.id,
        seller_id=view.product.seller_id,
        title=view.product.title,
        description=view.product.description,
        category_id=view.product.category_id,
        status=view.product.status,
        variants=[
            VariantOut(
                id=v.id,
                sku=v.sku,
                attributes=v.attributes,
                prices=[_price_out(p) for p in view.prices[v.id]],
            )
            for v in view.variants
        ],
        images=[ImageOut.model_validate(i) for i in view.images],
    )


@router.post("/v1/products", status_code=status.HTTP_201_CREATED, response_model=ProductOut)
async def create_product(body: ProductIn, wired: PlatformDep, _: Operator) -> ProductOut:
    """Create a product with variants, opening prices and images; 409 `sku_taken`."""
    async with wired.databases["products"].begin() as session:
        product = await products.create_product(
            session,
            seller_id=body.seller_id,
            title=body.title,
            description=body.description,
            category_id=body.category_id,
            status=ProductStatus(body.status),
            variants=[
                products.NewVariant(
                    sku=v.sku,
                    attributes=dict(v.attributes),
                    prices=[Money.of(p.amount, p.currency) for p in v.prices],
                    weight_g=v.weight_g,
                    length_mm=v.length_mm,
                    width_mm=v.width_mm,
                    height_mm=v.height_mm,
                )
                for v in body.variants
            ],
            images=[(i.url, i.sort_order) for i in body.images],
        )
        return _product_out(await products.get_product(session, product.id))


@router.get("/v1/products/{product_id}", response_model=ProductOut)
async def get_product(product_id: uuid.UUID, wired: PlatformDep) -> ProductOut:
    """A product with its variants, current prices and images."""
    async with wired.databases["products"].begin() as session:
        return _product_out(await products.get_product(session, product_id))


@router.put("/v1/products/{product_id}/variants/{variant_id}/prices", response_model=PriceOut)
async def set_price(
    product_id: uuid.UUID, variant_id: uuid.UUID, body: PriceIn, wired: PlatformDep, _: Operator
) -> PriceOut:
    """Close the open price in that currency (`valid_to`) and open a new one."""
    async with wired.databases["products"].begin() as session:
        price = await products.set_price(
            session, product_id, variant_id, Money.of(body.amount, body.currency)
        )
        return _price_out(price)


def _stock_out(item: InventoryItem) -> StockOut:
    return StockOut(
        variant_id=item.variant_id,
        total_stock=item.total_stock,
        reserved=item.reserved,
        available=item.total_stock - item.reserved,
    )


@router.put("/v1/inventory/{variant_id}", response_model=StockOut)
async def set_stock(
    variant_id: uuid.UUID, body: StockIn, wired: PlatformDep, _: Operator
) -> StockOut:
    """Set a variant's total stock; 409 `stock_below_reserved` under what checkouts hold."""
    return _stock_out(await catalog.set_stock(wired, variant_id, body.total_stock))


@router.get("/v1/inventory/{variant_id}", response_model=StockOut)
async def get_stock(variant_id: uuid.UUID, wired: PlatformDep, _: Operator) -> StockOut:
    """A variant's stock, reserved units and what is available."""
    async with wired.databases["inventory"].begin() as session:
        return _stock_out(await inventory.get_stock(session, variant_id))


def _coupon_out(coupon: Coupon, redeemed: int) -> CouponOut:
    currency = coupon.currency
    return CouponOut(
        id=coupon.id,
        code=coupon.code,
        discount_type=coupon.discount_type,
        discount_value=plain(coupon.discount_value),
        currency=currency,
        valid_from=coupon.valid_from,
        valid_to=coupon.valid_to,
        max_redemptions=coupon.max_redemptions,
        max_per_user=coupon.max_per_user,
        min_subtotal=(
            money(coupon.min_subtotal, currency)
            if coupon.min_subtotal is not None and currency
            else None
        ),
        redeemed=redeemed,
    )


@router.post("/v1/coupons", status_code=status.HTTP_201_CREATED, response_model=CouponOut)
async def create_coupon(body: CouponIn, wired: PlatformDep, _: Operator) -> CouponOut:
    """Create a coupon; 409 `coupon_code_taken`."""
    async with wired.databases["coupons"].begin() as session:
        spec = coupons.NewCoupon(
            **body.model_dump(exclude={"discount_type"}),
            discount_type=DiscountType(body.discount_type),
        )
        coupon = await coupons.create_coupon(session, spec)
        return _coupon_out(coupon, 0)


@router.get("/v1/coupons/{code}", response_model=CouponOut)
async def get_coupon(code: str, wired: PlatformDep, _: Operator) -> CouponOut:
    """A coupon with its `redeemed` count (held and confirmed redemptions)."""
    async with wired.databases["coupons"].begin() as session:
        coupon = await coupons.get_coupon(session, code)
        return _coupon_out(coupon, await coupons.redeemed_count(session, coupon.id))
