//! The Entitlements catalogue: `/v1/entitlements/features` and `/v1/products/{id}/features`,
//! driven by async-stripe (`stripe_misc`, `stripe_product`) and, for Stripe's error
//! envelope, plain form posts.

use std::collections::HashMap;

use stripe_misc::entitlements_feature::{
    CreateEntitlementsFeature, ListEntitlementsFeature, RetrieveEntitlementsFeature,
    UpdateEntitlementsFeature,
};
use stripe_product::product_feature::{
    CreateProductProductFeature, DeleteProductFeature, ListProductProductFeature,
    RetrieveProductFeature,
};

use crate::helpers::*;

#[tokio::test]
async fn features_are_created_listed_filtered_retrieved_and_archived() {
    let h = spawn().await;
    let c = client(&h);
    let created = CreateEntitlementsFeature::new("night_mode", "Night mode")
        .metadata(HashMap::from([("tier".to_string(), "pro".to_string())]))
        .send(&c)
        .await
        .unwrap();
    assert!(created.id.as_str().starts_with("feat_"));
    assert!(created.active && !created.livemode);
    assert_eq!(created.metadata["tier"], "pro");
    CreateEntitlementsFeature::new("trip_log", "Trip log")
        .send(&c)
        .await
        .unwrap();

    let all = ListEntitlementsFeature::new().send(&c).await.unwrap();
    assert_eq!(all.data.len(), 2);
    assert_eq!(all.url, "/v1/entitlements/features");
    let one = ListEntitlementsFeature::new()
        .lookup_key("night_mode")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(one.data.len(), 1);
    assert_eq!(one.data[0].id, created.id);
    let got = RetrieveEntitlementsFeature::new(created.id.clone())
        .send(&c)
        .await
        .unwrap();
    assert_eq!(got.name, "Night mode");

    // The wire format, and Stripe's 400s and 404.
    let (status, raw) = v1_get(&h, &format!("entitlements/features/{}", created.id), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(raw["object"], "entitlements.feature");
    assert_eq!(raw["lookup_key"], "night_mode");
    let (status, dup) = v1_post(
        &h,
        "entitlements/features",
        &[("name", "Again"), ("lookup_key", "night_mode")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(dup["error"]["type"], "invalid_request_error");
    assert_eq!(dup["error"]["param"], "lookup_key");
    for (form, param) in [
        (vec![("name", "No key")], "lookup_key"),
        (vec![("lookup_key", "no_name")], "name"),
    ] {
        let (status, err) = v1_post(&h, "entitlements/features", &form).await;
        assert_eq!(status, 400);
        assert_eq!(err["error"]["param"], param);
    }
    let (status, missing) = v1_get(&h, "entitlements/features/feat_nope", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "resource_missing");

    // Renaming, then archiving: archived features leave the default list and free their key.
    let renamed = UpdateEntitlementsFeature::new(created.id.clone())
        .name("Dark mode")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(renamed.name, "Dark mode");
    let archived = UpdateEntitlementsFeature::new(created.id.clone())
        .active(false)
        .send(&c)
        .await
        .unwrap();
    assert!(!archived.active);
    let listed = ListEntitlementsFeature::new().send(&c).await.unwrap();
    assert_eq!(listed.data.len(), 1);
    let only_archived = ListEntitlementsFeature::new()
        .archived(true)
        .send(&c)
        .await
        .unwrap();
    assert_eq!(only_archived.data[0].id, created.id);
    let (status, _) = v1_post(
        &h,
        "entitlements/features",
        &[("name", "Night mode 2"), ("lookup_key", "night_mode")],
    )
    .await;
    assert_eq!(
        status, 200,
        "an archived feature's lookup key may be reused"
    );
    let (status, err) = v1_post(
        &h,
        "products/prod_msr_weekly/features",
        &[("entitlement_feature", created.id.as_str())],
    )
    .await;
    assert_eq!(status, 400, "an archived feature cannot be attached");
    assert_eq!(err["error"]["param"], "entitlement_feature");
}

#[tokio::test]
async fn product_features_are_attached_listed_retrieved_and_detached() {
    let h = spawn().await;
    let c = client(&h);
    let feature = CreateEntitlementsFeature::new("trip_log", "Trip log")
        .send(&c)
        .await
        .unwrap();
    let attached = CreateProductProductFeature::new("prod_msr_weekly", feature.id.as_str())
        .send(&c)
        .await
        .unwrap();
    assert!(attached.id.as_str().starts_with("prodft_"));
    assert_eq!(attached.entitlement_feature.id, feature.id);
    assert_eq!(attached.entitlement_feature.lookup_key, "trip_log");

    let (status, again) = v1_post(
        &h,
        "products/prod_msr_weekly/features",
        &[("entitlement_feature", feature.id.as_str())],
    )
    .await;
    assert_eq!(status, 400, "the same feature twice");
    assert_eq!(again["error"]["param"], "entitlement_feature");
    let (status, _) = v1_post(
        &h,
        "products/prod_nope/features",
        &[("entitlement_feature", feature.id.as_str())],
    )
    .await;
    assert_eq!(status, 404);

    let listed = ListProductProductFeature::new("prod_msr_weekly")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.url, "/v1/products/prod_msr_weekly/features");
    let other = ListProductProductFeature::new("prod_msr_monthly")
        .send(&c)
        .await
        .unwrap();
    assert!(other.data.is_empty());
    let got = RetrieveProductFeature::new(attached.id.as_str(), "prod_msr_weekly")
        .send(&c)
        .await
        .unwrap();
    assert_eq!(got.id, attached.id);
    let (status, _) = v1_get(
        &h,
        &format!("products/prod_msr_monthly/features/{}", attached.id),
        &[],
    )
    .await;
    assert_eq!(
        status, 404,
        "a product feature is found only under its product"
    );

    let (status, deleted) = v1_delete(
        &h,
        &format!("products/prod_msr_weekly/features/{}", attached.id),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        serde_json::json!({"id": attached.id.as_str(), "object": "product_feature", "deleted": true})
    );
    assert!(
        ListProductProductFeature::new("prod_msr_weekly")
            .send(&c)
            .await
            .unwrap()
            .data
            .is_empty()
    );
    let again = DeleteProductFeature::new(attached.id.as_str(), "prod_msr_weekly")
        .send(&c)
        .await;
    assert!(again.is_err(), "deleting twice is a 404");
}
